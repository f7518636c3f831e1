"""screener: predict ionic migration barriers of intercalation hosts and rank them."""

from __future__ import annotations

from screener._band import N_IMAGES, Band
from screener._data import Entry, read_entries
from screener._errors import (
    BandBuildError,
    BandTooLargeError,
    CloseContactError,
    DisorderedStructureError,
    ModelLoadError,
    NoHopsError,
    NoHostFrameworkError,
    NoWorkingIonError,
    ScreenerError,
    StructureReadError,
)
from screener._metrics import class_stratified_folds, regression_metrics

__version__ = "0.2.0"


def screen(*args, **kwargs):
    """Screen hosts for fast migration; see :func:`screener._screen.screen`."""
    from screener._screen import screen as _screen

    return _screen(*args, **kwargs)

__all__ = [
    "N_IMAGES",
    "Band",
    "BandBuildError",
    "BandTooLargeError",
    "CloseContactError",
    "DisorderedStructureError",
    "Entry",
    "ModelLoadError",
    "NoHopsError",
    "NoHostFrameworkError",
    "NoWorkingIonError",
    "ScreenerError",
    "StructureReadError",
    "__version__",
    "class_stratified_folds",
    "read_entries",
    "regression_metrics",
    "screen",
]
