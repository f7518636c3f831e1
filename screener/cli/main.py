"""The ``screener`` command: one sub-command per module of :mod:`screener.cli`.

Exit codes: 0 success; 3 finished but some inputs failed; 2 usage or configuration error;
1 crash.
"""

from __future__ import annotations

import argparse
import logging

from screener._version import __version__
from screener.cli import (  # noqa: I001
    evaluate,
    export,
    hops,
    learn,
    nightly,
    predict,
    refine,
    report,
    run,
    suggest,
    train,
)
from screener.cli.options import EXIT_CRASH, EXIT_USAGE, configure_logging

#: The sub-commands, in the order ``--help`` lists them; each module has ``register(subparsers)``.
COMMANDS = (run, hops, nightly, export, refine, report, predict, suggest, learn, train, evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="screener",
        description="Screen intercalation hosts for fast ionic migration (predicted barriers Em).",
    )
    parser.add_argument("--version", action="version", version=f"screener {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    configure_logging(verbose=args.verbose, quiet=getattr(args, "quiet", False))
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
