"""Progress bars of long work (rich), or none."""

from __future__ import annotations

from contextlib import nullcontext


def progress_bar(quiet: bool):
    if quiet:
        return nullcontext()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=False)
