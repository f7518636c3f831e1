"""``screener suggest``: the hops whose DFT barrier would most change a run's shortlist."""

from __future__ import annotations

import argparse
import json
import logging

from screener.cli.options import EXIT_OK, EXIT_USAGE, HelpFormatter

log = logging.getLogger("screener.suggest")

_DESCRIPTION = """\
Rank the hops of a finished run by how much their DFT barrier would change the shortlist: the
probability that the barrier lies on the other side of the threshold than predicted (normal with
the model's uncertainty), for hops that decide their material: the hops of a shortlisted
material's 1D path, and the bottleneck hop of a material that missed the shortlist. Hand the list
to `screener export RUN_DIR --hops FILE` for NEB inputs.

Exit codes: 0 done; 2 usage error (no run directory)."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``suggest`` sub-command."""
    p = sub.add_parser("suggest", help="the hops whose DFT barrier would most change the shortlist",
                       description=_DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="output folder of `screener run`")
    p.add_argument("--n", type=int, default=10, metavar="N", help="how many hops")
    p.add_argument("--threshold", type=float, default=None, help="shortlist threshold (eV; default: the run's)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of objects: material_id, hop_id, limit, predicted_em_eV, "
                        "uncertainty_eV, score, reason")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``screener suggest``; returns the exit code."""
    if args.n < 1:
        log.error("--n must be positive")
        return EXIT_USAGE
    from screener.cli.tables import fmt_ev, print_table
    from screener.core.errors import ScreenerError
    from screener.loop.suggest import suggest_hops
    from screener.screening.rundir import load_run

    try:
        rows = suggest_hops(load_run(args.run_dir), args.n, args.threshold)
    except ScreenerError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print_table(f"{len(rows)} hops to compute next", ["material", "hop", "limit", "Em eV", "± eV", "score"],
                    [[r["material_id"], r["hop_id"], r["limit"], fmt_ev(r["predicted_em_eV"]),
                      fmt_ev(r["uncertainty_eV"]), f"{r['score']:.2f}"] for r in rows], keep=("material", "hop"))
        for r in rows:
            print(f"{r['material_id']} {r['hop_id']}: {r['reason']}")
    return EXIT_OK
