"""Command-line interface. Every command function returns an exit code.

Exit codes: 0 success; 3 finished but some inputs failed; 2 usage or configuration error;
1 crash.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

def add_run_source_argument(p: argparse.ArgumentParser) -> None:
    """``--source`` of the commands that read a finished run (export, refine)."""
    p.add_argument("--source", default=None,
                   help="where to fetch the structures again: the folder/file given to `screener run "
                        "--source` (needed for runs on structure files), 'bundled' or 'mp' "
                        "(default: what run.json records)")


# Sub-command modules; each defines ``register(subparsers)`` which sets ``func`` on its parser.
_COMMANDS = [
    "screener._cmd_train",
    "screener._cmd_evaluate",
    "screener._cmd_hops",
    "screener._cmd_run",
    "screener._cmd_export",
    "screener._cmd_refine",
    "screener._cmd_report",
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="screener",
        description="Screen intercalation hosts for fast ionic migration (predicted barriers Em).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # command not built in this version
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # Dask's own INFO lines (worker start/stop) drown the progress bars.
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - last resort: a crash is exit 1 with a traceback
        logging.getLogger("screener").exception("crashed")
        return EXIT_CRASH
