"""Tables printed at the end of a command, readable at 80 columns.

Identifiers (material ids, hop ids, formulas) are never cut: their columns keep their full width
and the numeric columns make room, with a compact border.
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
    """Print ``rows`` under ``columns``; the ``keep`` columns are never wrapped or cut.

    Args:
        title: line above the table.
        columns: headers.
        rows: cells as text.
        keep: headers of identifier columns, shown whole.
        caption: line below the table.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1),
              title_justify="left", caption_justify="left")
    for i, col in enumerate(columns):
        if col in keep:
            width = max([len(col)] + [len(r[i]) for r in rows])
            t.add_column(col, no_wrap=True, min_width=width)
        else:
            t.add_column(col, justify="right" if i else "left")
    for r in rows:
        t.add_row(*r)
    Console(stderr=False).print(t)
