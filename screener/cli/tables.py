"""Tables printed at the end of a command, readable at 80 columns.

Numbers are not the first to go: numeric columns keep their widest cell; identifiers (material
ids, hop ids, formulas) take the rest, the first one whole on one line where it fits, the others
folded onto more lines (whole, not cut) where they must be; a compact border. A table much wider
than the terminal (refine's ten columns at 80) can still have its last columns squeezed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def fmt_ev(x: Any, digits: int = 2) -> str:
    """A barrier for a table: ``0.43``, ``∞`` for an open path never found, ``–`` for missing."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "–"
    if math.isnan(x):
        return "–"
    return "∞" if math.isinf(x) else f"{x:.{digits}f}"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
                keep: Sequence[str] = (), caption: str | None = None) -> None:
    """Print ``rows`` under ``columns``; the ``keep`` columns are folded where they must be, never cut.

    Args:
        title: line above the table.
        columns: headers.
        rows: cells as text.
        keep: headers of identifier columns, shown whole (the first on one line where it fits).
        caption: line below the table.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1),
              title_justify="left", caption_justify="left")
    width = Console().width
    natural = [max([len(c) for c in (r[i] for r in rows)] + [max(map(len, col.split()), default=0)])
               for i, col in enumerate(columns)]
    ids = [i for i, col in enumerate(columns) if col in keep]
    # Numbers go last: each other column asks for its widest cell (a header may break between
    # words). The identifiers take what is left: the first shown whole on one line where it
    # roughly fits (2 characters between columns; rich can fold the others below 8 to make it),
    # the others folded onto more lines (whole, never cut with "…").
    room = width - sum(natural[i] for i in range(len(columns)) if i not in ids) - 2 * (len(columns) - 1)
    whole = {ids[0]} if ids and natural[ids[0]] + sum(min(natural[i], 8) for i in ids[1:]) <= room else set()
    for i, col in enumerate(columns):
        if i in whole:
            t.add_column(col, no_wrap=True, min_width=max(natural[i], len(col)))
        elif i in ids:
            t.add_column(col, overflow="fold")
        else:
            t.add_column(col, justify="right" if i else "left", no_wrap=False, min_width=natural[i])
    for r in rows:
        t.add_row(*r)
    Console(stderr=False).print(t)
