"""Hand-off to DFT teams: NEB inputs (export), uMLIP CI-NEB (refine) and the HTML report."""

from screener.handoff.export import ExportOptions, export_run
from screener.handoff.neb import NebResult, RefineSettings, neb_refine
from screener.handoff.potentials import POTENTIALS, PotentialNotInstalledError
from screener.handoff.refine import refine_run
from screener.handoff.report import write_report

__all__ = [
    "ExportOptions",
    "NebResult",
    "POTENTIALS",
    "PotentialNotInstalledError",
    "RefineSettings",
    "export_run",
    "neb_refine",
    "refine_run",
    "write_report",
]
