"""``screener report``: one self-contained HTML page of a run."""

from __future__ import annotations

import argparse
import logging

from screener.cli.options import EXIT_OK, EXIT_USAGE, HelpFormatter
from screener.core.errors import ScreenerError

log = logging.getLogger("screener.report")

_DESCRIPTION = """\
Write one self-contained HTML page (no external files; figures are embedded PNG data URIs)
summarising RUN_DIR: the ranked shortlist (table, and its 1D barriers with uncertainty bars),
the predicted barriers of every hop by structural family (the bundled catalogue's family, else
the space group), barrier vs hop length with the model's uncertainty, and, when `screener
refine` ran, the predicted vs ML-potential NEB parity and table.

Exit codes: 0 written; 2 no readable run directory; 1 crash."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-command."""
    p = sub.add_parser("report", help="write a self-contained HTML report of a run",
                       description=_DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="output folder of `screener run`")
    p.add_argument("--out", required=True, metavar="FILE.html", help="HTML file to write")
    p.add_argument("--top", type=int, default=50, metavar="N",
                   help="shortlist rows shown in the table and the uncertainty figure (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``screener report``; returns the exit code."""
    from screener.handoff.report import write_report

    if args.top < 1:
        log.error("--top must be positive")
        return EXIT_USAGE
    try:
        out = write_report(args.run_dir, args.out, top=args.top)
    except ScreenerError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    print(f"report written to {out}")
    return EXIT_OK
