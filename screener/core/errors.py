"""Typed errors: each one becomes a failure row for the item that raised it."""

from __future__ import annotations


class ScreenerError(Exception):
    """Base class of every error screener turns into a failure row.

    Attributes:
        stage: the pipeline stage that raised it (``read``, ``pathways``, ``band``, ``model``...).
    """

    stage: str = "screener"


class StructureReadError(ScreenerError):
    """A file or record could not be read as a crystal structure."""
    stage = "read"


class DisorderedStructureError(ScreenerError):
    """The structure has partially occupied sites and no ordering was requested."""
    stage = "pathways"


class NoWorkingIonError(ScreenerError):
    """The structure holds none of the working ion."""
    stage = "pathways"


class NoHostFrameworkError(ScreenerError):
    """The structure holds only the working ion: there is no host to migrate through."""
    stage = "pathways"


class CloseContactError(ScreenerError):
    """Two atoms sit closer than the allowed minimum distance."""
    stage = "pathways"


class BandTooLargeError(ScreenerError):
    """The supercell needed for a hop exceeds the maximum band size."""
    stage = "band"


class BandBuildError(ScreenerError):
    """A migration band could not be built from the given data."""
    stage = "band"


class NoHopsError(ScreenerError):
    """No migration hop of the working ion was found below the cutoff."""
    stage = "pathways"


class ModelLoadError(ScreenerError):
    """Model weights or configuration could not be loaded."""
    stage = "model"


class PathwayError(ScreenerError):
    """The hop network could not be built (symmetry or migration-graph failure)."""
    stage = "pathways"


class RunDirError(ScreenerError):
    """A run directory is missing, incomplete, or its source cannot be opened again."""
    stage = "handoff"


class TooManyVoidsError(ScreenerError):
    """The void analysis found more candidate sites per cell than the cap allows."""
    stage = "pathways"
