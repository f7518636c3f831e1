"""What the commands share: exit codes, the help formatter, and option groups.

One definition of each option serves every command that has it (``run`` and ``nightly`` share
the Materials Project, pathway and execution options), so a default or a help text is written once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from screener.pathways.config import DEFAULT_MIN_WIDTH, SITES

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that states a default once: appended only when the text does not already say it.

    Options without a meaningful default (None, False, required ones) get no "(default: ...)".
    Descriptions keep their own line breaks.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or "%(default)" in text or action.required:
            return text
        if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Log to stderr: debug with ``verbose``, warnings only with ``quiet``; Dask's chatter muted."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(format=LOG_FORMAT, stream=sys.stderr)  # no-op when handlers exist
    logging.getLogger().setLevel(level)
    if not verbose:
        # Dask's own INFO lines (worker start/stop) drown the progress bars.
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)


def add_run_source_argument(p: argparse.ArgumentParser) -> None:
    """``--source`` of the commands that read a finished run (export, refine)."""
    p.add_argument("--source", default=None,
                   help="where to fetch the structures again: the folder/file given to `screener run "
                        "--source` (needed for runs on structure files), 'bundled' or 'mp' "
                        "(default: what run.json records)")


def add_mp_options(p: argparse.ArgumentParser) -> None:
    """The Materials Project options of ``run`` and ``nightly``."""
    mp = p.add_argument_group("Materials Project (--source mp)")
    mp.add_argument("--max-ehull", type=float, default=0.1,
                    help="only materials at most this far above the convex hull (eV/atom)")
    mp.add_argument("--max-sites", type=int, default=150,
                    help="only materials with at most this many sites per cell")
    mp.add_argument("--experimental-only", action="store_true",
                    help="only experimentally known materials (ICSD entry, theoretical=False)")
    mp.add_argument("--insertion-electrodes", action="store_true",
                    help="also screen the ion-holding materials of the working ion's insertion-electrode "
                         "documents (charged/discharged pairs)")
    mp.add_argument("--cache", default=None,
                    help="cache folder: structures, stamps and earlier results; a later run downloads and "
                         "re-screens only new or changed materials (default: ~/.cache/screener/mp, or "
                         "$XDG_CACHE_HOME/screener/mp)")
    mp.add_argument("--offline", action="store_true",
                    help="screen from the cache alone, without contacting the Materials Project")


def mp_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`screener.sources.make_source` from :func:`add_mp_options`."""
    return {"max_ehull": args.max_ehull, "max_sites": args.max_sites,
            "experimental_only": args.experimental_only,
            "insertion_electrodes": args.insertion_electrodes, "cache": args.cache,
            "offline": args.offline}


def add_min_width_option(p: Any, default: float | None = DEFAULT_MIN_WIDTH, what: str = "") -> None:
    """``--min-width``: the perpendicular width of a band's supercell (Å)."""
    p.add_argument("--min-width", type=float, default=default, metavar="Å",
                   help="smallest perpendicular width of a hop's supercell; smaller gives smaller "
                        "cells (fewer atoms), larger keeps periodic images of the ion apart" + what)


def add_pathway_options(p: argparse.ArgumentParser) -> None:
    """Hop-finding and supercell options of ``run``, ``nightly`` and ``hops``."""
    g = p.add_argument_group("hops and supercells")
    g.add_argument("--cutoff", type=float, default=5.0, metavar="Å", help="longest hop considered")
    g.add_argument("--max-cutoff", type=float, default=7.0, metavar="Å",
                   help="a host with no hop within --cutoff gets its nearest-neighbour hops "
                        "(1.1 x the shortest ion-ion distance) up to this length; set it to "
                        "--cutoff to turn this off")
    add_min_width_option(g)
    g.add_argument("--max-band-sites", type=int, default=1000, metavar="N",
                   help="refuse hops whose band would exceed this many sites")
    g.add_argument("--no-primitive", action="store_true",
                   help="keep the input cell instead of reducing it to its primitive cell (hops, "
                        "bands and hop ids are then of the input cell)")
    g.add_argument("--order-disordered", action="store_true",
                   help="order partially occupied structures instead of refusing them")
    g.add_argument("--sites", choices=SITES, default="occupied",
                   help="occupied: hops join the sites the ion occupies; voids: also the empty sites of "
                        "the framework where it fits (hosts without the ion are screened with it "
                        "inserted, and paths may turn through empty sites)")


def pathway_config(args: argparse.Namespace, **extra: Any) -> Any:
    """The :class:`~screener.pathways.PathwayConfig` of :func:`add_pathway_options`.

    Raises:
        ValueError: settings out of range.
    """
    from screener.pathways.config import PathwayConfig

    return PathwayConfig(cutoff=args.cutoff, max_cutoff=args.max_cutoff, min_width=args.min_width,
                         max_band_sites=args.max_band_sites, order_disordered=args.order_disordered,
                         primitive=not args.no_primitive, sites=args.sites, **extra)


#: ``--batches`` and the ``fuse`` argument of :func:`screener.screen` it gives.
BATCHES = {"auto": None, "host": True, "across": False}


def add_execution_options(p: argparse.ArgumentParser) -> None:
    """Where and how the screen runs: Dask workers, batches, device, model, threshold."""
    g = p.add_argument_group("execution")
    g.add_argument("--threshold", type=float, default=0.65,
                   help="shortlist materials whose 1D percolation barrier is below this (eV)")
    g.add_argument("--workers", type=int, default=None,
                   help="worker processes of a local Dask cluster (default: the CPU cores, or one per GPU)")
    g.add_argument("--scheduler", default=None,
                   help="address of an existing Dask scheduler to join instead of starting workers")
    g.add_argument("--sync", action="store_true",
                   help="run everything in this process (no Dask workers): for debugging")
    g.add_argument("--batch-size", type=int, default=None,
                   help="hops per model batch (default: 32 on a GPU, where a batch is one forward "
                        "pass; 8 on a CPU, where batching buys nothing)")
    g.add_argument("--batches", choices=BATCHES, default="auto",
                   help="host: each host's hops are predicted in the task that found them, in "
                        "batches that never span hosts (fewest tasks; the CPU default); across: "
                        "separate model tasks whose batches span hosts (full forward passes; the "
                        "GPU default); auto: by --device")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the model runs: auto uses GPUs when present (one worker per GPU)")
    g.add_argument("--model", default=None,
                   help="model directory (default: $SCREENER_MODEL_DIR, else the shipped model)")


def execution_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the options of :func:`add_execution_options` (empty when nothing)."""
    problems = []
    if args.batch_size is not None and args.batch_size < 1:
        problems.append(f"--batch-size must be positive, got {args.batch_size}")
    if args.workers is not None and args.workers < 1:
        problems.append(f"--workers must be positive, got {args.workers}")
    if not 0.0 < args.threshold < 20.0:
        problems.append(f"--threshold is a barrier in eV between 0 and 20, got {args.threshold}")
    return problems


def screen_settings(args: argparse.Namespace, log: logging.Logger) -> tuple[list[str], Any] | None:
    """The working ions and pathway settings of ``run`` and ``nightly``, checked before any work.

    Returns:
        ``(ions, PathwayConfig)``, or None after logging every problem (the command exits 2).
    """
    from screener.core.chemistry import parse_chemistry

    problems = execution_problems(args)
    ions, pw = [], None
    try:
        ions = parse_chemistry(args.chemistry)
    except ValueError as exc:
        problems.append(f"--chemistry: {exc}")
    try:
        pw = pathway_config(args)
    except ValueError as exc:
        problems.append(str(exc))
    for problem in problems:
        log.error("%s", problem)
    return None if problems else (ions, pw)


def source_of(args: argparse.Namespace) -> Any:
    """The source named by ``--source`` with the ``--sites`` and Materials Project options.

    Raises:
        ScreenerError: the source cannot be opened (no such path, no API key...).
    """
    from screener.sources.factory import make_source

    return make_source(args.source, sites=args.sites, **mp_options(args))


def screen_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`screener.screen` from :func:`add_execution_options`."""
    return dict(workers=args.workers, scheduler=args.scheduler, synchronous=args.sync,
                batch_size=args.batch_size, threshold=args.threshold, model_dir=args.model,
                device=args.device, fuse=BATCHES[args.batches])
