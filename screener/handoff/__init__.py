"""Hand-off to DFT teams: NEB inputs (export), MLIP-NEB combined with the prediction (refine), the HTML report.

Names load on first use, so that the command line can read this package's settings (formats,
potentials, defaults) without importing the whole hand-off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from screener.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from screener.handoff.batching import CalculatorEvaluator
    from screener.handoff.combine import Combination, load_combination
    from screener.handoff.export import ExportOptions, export_run
    from screener.handoff.neb import NebResult, RefineSettings, neb_refine
    from screener.handoff.potentials import (
        POTENTIALS,
        PotentialNotInstalledError,
        PotentialWeightsError,
        load_potential,
    )
    from screener.handoff.refine import refine_run
    from screener.handoff.report import write_report

_EXPORTS = {
    "ExportOptions": "screener.handoff.export", "export_run": "screener.handoff.export",
    "NebResult": "screener.handoff.neb", "RefineSettings": "screener.handoff.neb",
    "neb_refine": "screener.handoff.neb", "POTENTIALS": "screener.handoff.potentials",
    "PotentialNotInstalledError": "screener.handoff.potentials", "refine_run": "screener.handoff.refine",
    "write_report": "screener.handoff.report", "CalculatorEvaluator": "screener.handoff.batching",
    "Combination": "screener.handoff.combine", "load_combination": "screener.handoff.combine",
    "PotentialWeightsError": "screener.handoff.potentials", "load_potential": "screener.handoff.potentials",
}

__all__ = ["POTENTIALS", "CalculatorEvaluator", "Combination", "ExportOptions", "NebResult",
           "PotentialNotInstalledError", "PotentialWeightsError", "RefineSettings", "export_run",
           "load_combination", "load_potential", "neb_refine", "refine_run", "write_report"]


__getattr__ = lazy_getattr("screener.handoff", _EXPORTS, globals())
