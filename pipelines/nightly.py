"""``python -m pipelines.nightly``: the entry point cron calls; the same as ``screener nightly``.

The engine lives in :mod:`pipelines.increment` (pull, diff, screen the delta, append, refresh
``latest/``) and :mod:`pipelines.results` (the dataset); the options in :mod:`screener.cli.nightly`.
"""

from __future__ import annotations

import sys

from screener.cli.main import main as _screener_main


def main(argv: list[str] | None = None) -> int:
    """Run one nightly pass with ``argv`` (default: the command line); returns the exit code."""
    return _screener_main(["nightly", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
