"""``screener run``: screen a chemistry end to end and write ranked Parquet tables."""

from __future__ import annotations

import argparse
import logging

from screener.cli.options import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    HelpFormatter,
    add_execution_options,
    add_mp_options,
    add_pathway_options,
    screen_kwargs,
    screen_settings,
    source_of,
)
from screener.cli.tables import fmt_ev, print_table
from screener.core.errors import ModelLoadError, ScreenerError

log = logging.getLogger("screener.run")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``run`` sub-command."""
    p = sub.add_parser(
        "run",
        help="screen hosts for a working ion and write ranked Parquet tables",
        description=(
            "Find the distinct hops of the working ion in every host of the source, predict each "
            "hop's migration barrier with the band model on Dask workers, and write hops, "
            "structures, shortlist and failures tables plus run.json. Exit code: 0 all inputs "
            "screened; 3 finished but some inputs failed (see failures.parquet); 2 usage or "
            "configuration error; 1 crash."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--chemistry", required=True,
                   help="working ion(s): Mg, Ca, Zn, Li, Na, K, Al...; a comma list screens several")
    p.add_argument("--source", default=None,
                   help="'bundled' (catalogue in data/hosts), 'mp' (Materials Project, needs an API key: "
                        "MP_API_KEY, or mp_api_key in the config file) or a folder/file of CIF, POSCAR or "
                        "pymatgen-JSON structures; default: mp when an API key is set, else bundled")
    p.add_argument("--out", default=None,
                   help="output folder (default: runs/<chemistry>-<UTC date>); running the same command "
                        "into the same folder again resumes an interrupted run (finished work is kept "
                        "in <out>/_parts)")
    add_execution_options(p)
    add_pathway_options(p)
    add_mp_options(p)
    p.add_argument("--top", type=int, default=10, metavar="N",
                   help="rows of the ranking shown at the end (every material, shortlisted or not)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary table (for cron)")
    p.set_defaults(func=run)


def _summary(result, top: int, threshold: float) -> None:
    """The top of the full ranking (shortlisted or not), then where the tables are."""
    from screener.screening.tables import with_path

    structures = result.structures
    short = result.shortlist
    passing = set(zip(short["material_id"], short["working_ion"]))
    rows = []
    head = with_path(structures.head(top), result.hops)  # the uncertainty of every row's 1D path
    ions = sorted(set(structures["working_ion"]))
    one_ion = len(ions) == 1  # then the title names it, and the table is one column narrower
    for i, r in enumerate(head.itertuples(index=False), start=1):
        rows.append([str(i), str(r.material_id), str(r.formula), *([] if one_ion else [str(r.working_ion)]),
                     fmt_ev(r.percolation_1d_eV), fmt_ev(r.path_max_uncertainty_eV), fmt_ev(r.percolation_3d_eV),
                     "yes" if (r.material_id, r.working_ion) in passing else ""])
    what = f"{ions[0]} hosts" if one_ion else "materials"
    title = (f"Top {len(rows)} of {len(structures)} {what} by 1D percolation barrier; "
             f"{len(short)} shortlisted (< {threshold:g} eV); {len(result.failures)} failures")
    print_table(title, ["#", "material", "formula", *([] if one_ion else ["ion"]), "1D eV", "± eV", "3D eV", "short"],
                rows, keep=("material", "formula"),
                caption=f"tables in {result.out}" if result.out is not None else None)


def run(args: argparse.Namespace) -> int:
    """Run ``screener run``; returns the exit code."""
    from screener.screening.run import screen
    from screener.screening.store import default_out_dir

    checked = screen_settings(args, log)
    if checked is None:
        return EXIT_USAGE
    ions, pw = checked
    try:
        source = source_of(args)
        kwargs = dict(screen_kwargs(args), pathways=pw, quiet=args.quiet)
    except (ScreenerError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    # From here a ValueError is a bug (exit 1 with its traceback), not a usage error.
    try:
        if getattr(source, "incremental", False):
            from pipelines.increment import (
                run_incremental,  # screens only what changed since the last run
            )

            result = run_incremental(ions, source, args.out, **kwargs)
        else:
            result = screen(ions, source, args.out or default_out_dir(ions), **kwargs)
    except (ModelLoadError, ScreenerError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    if not args.quiet:
        _summary(result, args.top, args.threshold)
    n = len(result.failures)
    if n:
        log.warning("%d input(s) failed: see %s", n, (result.out / "failures.parquet") if result.out else "failures")
        return EXIT_PARTIAL
    return EXIT_OK
