"""Shared building blocks of every stage: typed errors, the migration band, files and hashes."""

from screener.core.band import N_IMAGES, Band
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
)

__all__ = [
    "N_IMAGES", "Band", "BandBuildError", "BandTooLargeError", "CloseContactError",
    "DisorderedStructureError", "ModelLoadError", "NoHopsError", "NoHostFrameworkError",
    "NoWorkingIonError", "PathwayError", "RunDirError", "ScreenerError", "StructureReadError",
]
