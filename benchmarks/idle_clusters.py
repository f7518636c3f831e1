"""CPU an idle local cluster takes: Dask's defaults against screener's ``LOCAL_CLUSTER_CONFIG``.

On a machine where the workers take every core, whatever the cluster's own services use (the
workers' stack profiler, the system monitor, the event-loop tick, the nannies' memory monitor)
is taken from the workers: it lowers "2 workers / 1" in ``benchmarks/run.py``, which keeps a
1-worker and a 2-worker cluster warm side by side. This starts that pair, idle, under each set of
settings in turn and measures the CPU of this process and its children over ``--seconds``.

Usage::

    python benchmarks/idle_clusters.py [--seconds 10] [--repeats 2]

Prints one JSON line and writes ``benchmarks/results/idle_clusters.json``. About a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _tree_cpu_s() -> float:
    """User + system CPU seconds of this process and its live children."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


@contextlib.contextmanager
def _settings(use_screener: bool) -> Iterator[None]:
    """``LOCAL_CLUSTER_CONFIG`` as shipped, or emptied (Dask's defaults) for the duration."""
    from screener.screening import execution

    saved = dict(execution.LOCAL_CLUSTER_CONFIG)
    if not use_screener:
        execution.LOCAL_CLUSTER_CONFIG.clear()
    try:
        yield
    finally:
        execution.LOCAL_CLUSTER_CONFIG.clear()
        execution.LOCAL_CLUSTER_CONFIG.update(saved)


def idle_cpu(use_screener: bool, seconds: float) -> float:
    """Cores used by an idle 1-worker plus 2-worker local cluster (CPU seconds per second)."""
    from screener.screening.execution import local_cluster

    with _settings(use_screener):
        clusters = [local_cluster(1, 1), local_cluster(2, 1)]
    try:
        time.sleep(3.0)  # past the start-up
        before = _tree_cpu_s()
        time.sleep(seconds)
        return (_tree_cpu_s() - before) / seconds
    finally:
        for c in clusters:
            c.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per repeat")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of each setting, interleaved")
    args = parser.parse_args(argv)
    runs: dict[str, list[float]] = {"dask_defaults": [], "screener": []}
    for _ in range(args.repeats):
        for name in runs:
            runs[name].append(round(idle_cpu(name == "screener", args.seconds), 4))
    record = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "clusters": "1 worker + 2 workers, idle, one thread each",
        "cores_used": {name: statistics.median(v) for name, v in runs.items()},
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "idle_clusters.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
