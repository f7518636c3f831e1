"""Shared building blocks of every stage: typed errors, the migration band, files and hashes.

Only the errors are re-exported here (they import nothing), so that loading this package stays
light; the band is :mod:`screener.core.band` (``screener.Band``).
"""

from screener.core.errors import (
    BandBuildError,
    BandTooLargeError,
    CloseContactError,
    DisorderedStructureError,
    ModelLoadError,
    NoHopsError,
    NoHostFrameworkError,
    NoWorkingIonError,
    PathwayError,
    RunDirError,
    ScreenerError,
    StructureReadError,
    TooManyVoidsError,
)

__all__ = [
    "BandBuildError", "BandTooLargeError", "CloseContactError",
    "DisorderedStructureError", "ModelLoadError", "NoHopsError", "NoHostFrameworkError",
    "NoWorkingIonError", "PathwayError", "RunDirError", "ScreenerError", "StructureReadError",
    "TooManyVoidsError",
]
