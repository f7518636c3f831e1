"""``screener nightly`` (also ``python -m pipelines.nightly``): one incremental nightly pass."""

from __future__ import annotations

import argparse
import json
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
from screener.core.errors import ModelLoadError, ScreenerError

log = logging.getLogger("pipelines.nightly")

DESCRIPTION = (
    "Pull hosts, diff against the cache, screen only what changed, append the results to a "
    "Parquet dataset partitioned by date and chemistry and refresh <results>/latest/. Prints one "
    "JSON line of counts. Exit code: 0 done; 3 done but some newly screened inputs failed; "
    "2 usage or configuration error; 1 crash."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a nightly pass."""
    p.add_argument("--chemistry", required=True, help="working ion(s), comma separated: Mg,Ca,Zn")
    p.add_argument("--source", default="mp",
                   help="'mp' (Materials Project), 'bundled' or a folder/file of structures")
    p.add_argument("--results", default="results", help="folder of the results dataset and latest/ tables")
    add_execution_options(p)
    add_pathway_options(p)
    add_mp_options(p)
    p.add_argument("--quiet", action="store_true", help="warnings only")
    p.set_defaults(func=run)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``nightly`` sub-command."""
    p = sub.add_parser("nightly", help="incremental screening into a results dataset (cron)",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    add_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Run one nightly pass; returns the exit code."""
    from pipelines.increment import nightly

    checked = screen_settings(args, log)
    if checked is None:
        return EXIT_USAGE
    ions, pw = checked
    try:
        source = source_of(args)
        inc, written = nightly(ions, source, args.results, pathways=pw, quiet=True, **screen_kwargs(args))
    except (ModelLoadError, ScreenerError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    totals = inc.run_info["incremental"]["totals"]
    log.info("nightly %s: screened %d, reused %d (%d new, %d changed, %d removed); %d file(s) written under %s",
             ",".join(inc.ions), totals["screened"], totals["reused"], totals["new"], totals["changed"],
             totals["removed"], len(written), args.results)
    print(json.dumps({"run_id": inc.run_info["run_id"], **totals, "files_written": len(written)}))
    return EXIT_PARTIAL if inc.new_failures else EXIT_OK
