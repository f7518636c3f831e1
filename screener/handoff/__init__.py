"""Hand-off to DFT teams: NEB inputs (export), uMLIP CI-NEB (refine) and the HTML report.

Names load on first use, so that the command line can read this package's settings (formats,
potentials, defaults) without importing the whole hand-off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from screener.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from screener.handoff.export import ExportOptions, export_run
    from screener.handoff.neb import NebResult, RefineSettings, neb_refine
    from screener.handoff.potentials import POTENTIALS, PotentialNotInstalledError
    from screener.handoff.refine import refine_run
    from screener.handoff.report import write_report

_EXPORTS = {
    "ExportOptions": "screener.handoff.export", "export_run": "screener.handoff.export",
    "NebResult": "screener.handoff.neb", "RefineSettings": "screener.handoff.neb",
    "neb_refine": "screener.handoff.neb", "POTENTIALS": "screener.handoff.potentials",
    "PotentialNotInstalledError": "screener.handoff.potentials", "refine_run": "screener.handoff.refine",
    "write_report": "screener.handoff.report",
}

__all__ = ["POTENTIALS", "ExportOptions", "NebResult", "PotentialNotInstalledError", "RefineSettings",
           "export_run", "neb_refine", "refine_run", "write_report"]


__getattr__ = lazy_getattr("screener.handoff", _EXPORTS, globals())
