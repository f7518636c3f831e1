"""``screener run``: screen a chemistry end to end and write ranked Parquet tables."""

from __future__ import annotations

import argparse
import logging
import math

from screener._cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from screener._errors import ModelLoadError, ScreenerError

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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--chemistry", required=True,
                   help="working ion(s): Mg, Ca, Zn, Li, Na, K, Al...; a comma list screens several")
    p.add_argument("--source", default=None,
                   help="'bundled' (catalogue in data/hosts), 'mp' (Materials Project, needs MP_API_KEY) "
                        "or a folder/file of CIF, POSCAR or pymatgen-JSON structures; default: mp when "
                        "MP_API_KEY is set, else bundled")
    p.add_argument("--out", default=None,
                   help="output folder (default: runs/<chemistry>-<UTC date>); running the same command "
                        "into the same folder again resumes an interrupted run (finished work is kept "
                        "in <out>/_parts)")
    p.add_argument("--threshold", type=float, default=0.65,
                   help="shortlist materials whose 1D percolation barrier is below this (eV)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes of a local Dask cluster (default: the CPU cores, or one per GPU)")
    p.add_argument("--scheduler", default=None,
                   help="address of an existing Dask scheduler to join instead of starting workers")
    p.add_argument("--sync", action="store_true",
                   help="run everything in this process (no Dask workers): for debugging")
    p.add_argument("--batch-size", type=int, default=None,
                   help="hops per model task (default: 32 on a GPU, where a task is one forward "
                        "pass; 8 on a CPU, where batching buys nothing and small tasks spread the "
                        "work evenly over the workers)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the model runs: auto uses GPUs when present (one worker per GPU)")
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--cutoff", type=float, default=5.0, help="longest hop considered (Å)")
    p.add_argument("--max-cutoff", type=float, default=7.0,
                   help="a host with no hop within --cutoff gets its nearest-neighbour hops "
                        "(1.1 x the shortest ion-ion distance) up to this length (Å); set it to "
                        "--cutoff to turn this off")
    p.add_argument("--max-band-sites", type=int, default=1000,
                   help="refuse hops whose band would exceed this many sites")
    p.add_argument("--order-disordered", action="store_true",
                   help="order partially occupied structures instead of refusing them")
    mp = p.add_argument_group("Materials Project (--source mp)")
    mp.add_argument("--max-ehull", type=float, default=0.1,
                    help="only materials at most this far above the convex hull (eV/atom)")
    mp.add_argument("--max-sites", type=int, default=150, help="only materials with at most this many sites per cell")
    mp.add_argument("--experimental-only", action="store_true",
                    help="only experimentally known materials (ICSD entry, theoretical=False)")
    mp.add_argument("--insertion-electrodes", action="store_true",
                    help="also screen the ion-holding materials of the working ion's insertion-electrode "
                         "documents (charged/discharged pairs)")
    mp.add_argument("--cache", default=None,
                    help="cache folder: structures, stamps and earlier results; a later run downloads and "
                         "re-screens only new or changed materials; when not given: ~/.cache/screener/mp "
                         "($XDG_CACHE_HOME/screener/mp)")
    mp.add_argument("--offline", action="store_true",
                    help="screen from the cache alone, without contacting the Materials Project")
    p.add_argument("--top", type=int, default=10, help="rows of the shortlist shown at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary table (for cron)")
    p.set_defaults(func=run)


def _summary(result, top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    short = result.shortlist
    t = Table(title=f"Shortlist ({len(short)} of {len(result.structures)} materials; "
                    f"{len(result.failures)} failures)")
    for col in ["rank", "material", "formula", "ion", "1D Em (eV)", "3D Em (eV)", "± (eV)", "hops"]:
        t.add_column(col)
    for _, r in short.head(top).iterrows():
        def fmt(x):
            return "∞" if math.isinf(x) else f"{x:.2f}"
        t.add_row(str(r["rank"]), str(r["material_id"]), str(r["formula"]), str(r["working_ion"]),
                  fmt(r["percolation_1d_eV"]), fmt(r["percolation_3d_eV"]),
                  f"{r['path_max_uncertainty_eV']:.2f}", str(len(r["path_hop_ids"])))
    console.print(t)
    if result.out is not None:
        console.print(f"tables in {result.out}")


def run(args: argparse.Namespace) -> int:
    """Run ``screener run``; returns the exit code."""
    from screener._pathways import PathwayConfig
    from screener._screen import screen
    from screener._sources import make_source

    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    if (args.batch_size is not None and args.batch_size < 1) or (args.workers is not None and args.workers < 1):
        log.error("--batch-size and --workers must be positive")
        return EXIT_USAGE
    try:
        pw = PathwayConfig(cutoff=args.cutoff, max_cutoff=args.max_cutoff,
                           max_band_sites=args.max_band_sites,
                           order_disordered=args.order_disordered)
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    mp_options = {"max_ehull": args.max_ehull, "max_sites": args.max_sites,
                  "experimental_only": args.experimental_only,
                  "insertion_electrodes": args.insertion_electrodes, "cache": args.cache,
                  "offline": args.offline}
    try:
        source = make_source(args.source, **mp_options)
        kwargs = dict(workers=args.workers, scheduler=args.scheduler, synchronous=args.sync,
                      batch_size=args.batch_size, threshold=args.threshold, model_dir=args.model,
                      device=args.device, pathways=pw, quiet=args.quiet)
        if getattr(source, "incremental", False):
            from pipelines.nightly import run_incremental  # screens only what changed since the last run

            result = run_incremental(args.chemistry, source, args.out, **kwargs)
        else:
            result = screen(args.chemistry, source, args.out, **kwargs)
    except (ModelLoadError, ScreenerError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    if not args.quiet:
        _summary(result, args.top)
    n = len(result.failures)
    if n:
        log.warning("%d input(s) failed: see %s", n, (result.out / "failures.parquet") if result.out else "failures")
        return EXIT_PARTIAL
    return EXIT_OK
