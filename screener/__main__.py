"""``python -m screener``: see ``python -m screener --help``."""

from __future__ import annotations

import sys

from screener._cli import main

if __name__ == "__main__":
    sys.exit(main())
