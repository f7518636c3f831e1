"""screener: predict ionic migration barriers of intercalation hosts and rank them.

The stages, in the order data flows through them (each subpackage imports only the ones before it):

- :mod:`screener.core`: errors, the migration band, atomic files, hashes, the chemistry parser.
- :mod:`screener.sources`: host structures from the bundled catalogue, files, or the Materials Project.
- :mod:`screener.pathways`: distinct hops of the working ion, their bands, percolation.
- :mod:`screener.model`: band graphs, BandALIGNN, descriptors, trees, the predictor.
- :mod:`screener.training`: datasets, metrics, k-fold training, model cards.
- :mod:`screener.screening`: :func:`screen` on Dask, the part store, the ranked tables.
- :mod:`screener.handoff`: NEB inputs, uMLIP-NEB refinement, the HTML report.
- :mod:`screener.cli`: the ``screener`` command (``python -m screener``).

A notebook needs only the names re-exported here::

    import screener
    result = screener.screen("Mg", source="bundled", write=False, synchronous=True)
    result.shortlist

Names are loaded on first use, so ``import screener`` stays fast (no torch, no pymatgen).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from screener._version import __version__
from screener.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from screener.core.band import N_IMAGES, Band
    from screener.core.chemistry import parse_chemistry
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
        ScreenerError,
        StructureReadError,
    )
    from screener.model.predictor import BandPredictor, Prediction, load_predictor
    from screener.pathways.bands import build_band
    from screener.pathways.config import PathwayConfig
    from screener.pathways.hop import Hop
    from screener.pathways.network import HostPathways
    from screener.pathways.search import find_pathways
    from screener.screening.run import ScreenResult, screen
    from screener.screening.rundir import RunData, load_run
    from screener.sources.factory import make_source
    from screener.sources.files import read_structure
    from screener.training.dataset import Entry, read_entries
    from screener.training.metrics import class_stratified_folds, regression_metrics

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "N_IMAGES": "screener.core.band",
    "Band": "screener.core.band",
    "parse_chemistry": "screener.core.chemistry",
    **{name: "screener.core.errors" for name in (
        "BandBuildError", "BandTooLargeError", "CloseContactError", "DisorderedStructureError",
        "ModelLoadError", "NoHopsError", "NoHostFrameworkError", "NoWorkingIonError", "PathwayError",
        "ScreenerError", "StructureReadError")},
    "make_source": "screener.sources.factory",
    "read_structure": "screener.sources.files",
    "PathwayConfig": "screener.pathways.config",
    "Hop": "screener.pathways.hop",
    "HostPathways": "screener.pathways.network",
    "find_pathways": "screener.pathways.search",
    "build_band": "screener.pathways.bands",
    "BandPredictor": "screener.model.predictor",
    "Prediction": "screener.model.predictor",
    "load_predictor": "screener.model.predictor",
    "Entry": "screener.training.dataset",
    "read_entries": "screener.training.dataset",
    "class_stratified_folds": "screener.training.metrics",
    "regression_metrics": "screener.training.metrics",
    "screen": "screener.screening.run",
    "ScreenResult": "screener.screening.run",
    "load_run": "screener.screening.rundir",
    "RunData": "screener.screening.rundir",
}

__all__ = [
    "__version__",
    "Band",
    "BandBuildError",
    "BandPredictor",
    "BandTooLargeError",
    "CloseContactError",
    "DisorderedStructureError",
    "Entry",
    "Hop",
    "HostPathways",
    "ModelLoadError",
    "N_IMAGES",
    "NoHopsError",
    "NoHostFrameworkError",
    "NoWorkingIonError",
    "PathwayConfig",
    "PathwayError",
    "Prediction",
    "RunData",
    "ScreenResult",
    "ScreenerError",
    "StructureReadError",
    "build_band",
    "class_stratified_folds",
    "find_pathways",
    "load_predictor",
    "load_run",
    "make_source",
    "parse_chemistry",
    "read_entries",
    "read_structure",
    "regression_metrics",
    "screen",
]


__getattr__ = lazy_getattr("screener", _EXPORTS, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
