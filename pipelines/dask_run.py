"""Run a screening on Dask: a LocalCluster of processes, an existing scheduler, or in-process.

Tasks carry batches: one task finds the hops of one host; one task predicts ``batch_size``
bands with the model loaded once per worker process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

log = logging.getLogger(__name__)


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, device: str = "cpu",
                threads_per_worker: int = 1, synchronous: bool = False) -> Iterator[Any]:
    """A Dask client for the run, or None for in-process (synchronous) execution.

    Args:
        workers: worker processes of a new LocalCluster (default: the CPU cores, or one per GPU).
        scheduler: address of an existing scheduler to join instead (e.g. dask-jobqueue on SLURM).
        device: ``cuda`` gives each local worker one GPU as the resource ``GPU``.
        threads_per_worker: threads per worker process.
        synchronous: run every task in this process, without Dask workers.
    """
    if synchronous:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    resources = None
    if device == "cuda":
        import torch

        n_gpu = torch.cuda.device_count()
        workers = workers or max(n_gpu, 1)
        resources = {"GPU": 1}
    workers = workers or os.cpu_count() or 1
    # One torch thread per worker unless asked otherwise: Dask provides the parallelism.
    env = {"OMP_NUM_THREADS": str(threads_per_worker), "MKL_NUM_THREADS": str(threads_per_worker)}
    os.environ.update({k: os.environ.get(k, v) for k, v in env.items()})
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           dashboard_address=None, resources=resources, silence_logs=logging.WARNING)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def map_tasks(client: Any, fn: Callable, items: Sequence[tuple], description: str = "tasks",
              progress: Any = None, resources: dict | None = None) -> list[Any]:
    """Apply ``fn(*item)`` to every item on ``client`` (or inline), results in input order.

    A task that raises is retried once by Dask (a lost worker is retried by Dask itself); if it
    still fails, its slot holds the exception so the caller can turn it into failure rows.
    """
    results: list[Any] = [None] * len(items)
    task = progress.add_task(description, total=len(items)) if progress is not None else None
    if client is None:
        for i, args in enumerate(items):
            try:
                results[i] = fn(*args)
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
            if progress is not None:
                progress.advance(task)
        return results
    from distributed import as_completed

    futures = [client.submit(fn, *args, pure=False, retries=1, resources=resources) for args in items]
    index = {f.key: i for i, f in enumerate(futures)}
    for fut in as_completed(futures):
        i = index[fut.key]
        try:
            results[i] = fut.result()
        except Exception as exc:  # noqa: BLE001
            results[i] = exc
        if progress is not None:
            progress.advance(task)
    return results
