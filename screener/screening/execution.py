"""Run a screening on Dask: a LocalCluster of processes, an existing scheduler, or in-process.

Tasks carry batches: on a CPU one task finds the hops of one host (or of a few small ones,
:func:`guided_groups`) and predicts them; on a GPU
one task finds the hops of one host and one task predicts ``batch_size`` bands cut across hosts,
the model loaded once per worker process. :class:`TaskRunner` streams results back as they
finish (and accepts new tasks meanwhile), so the model stage starts while hosts are still being
analysed.

Fault tolerance: a task that raises is retried once; a task whose worker dies (killed, out of
memory, a crash in native code) is rescheduled by Dask on another worker, up to the scheduler's
``distributed.scheduler.allowed-failures`` (3 by default), after which it comes back as a
``KilledWorker`` exception. Every task is pure: its result only goes to the client, which writes
it, so a task run twice changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from screener.core.errors import ScreenerError
from screener.core.memory import MALLOC_MMAP_THRESHOLD, MALLOC_TRIM_THRESHOLD

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, device: str = "cpu",
                threads_per_worker: int = 1, synchronous: bool = False) -> Iterator[Any]:
    """A Dask client for the run, or None for in-process (synchronous) execution.

    Args:
        workers: worker processes of a new LocalCluster (default: the CPU cores, or one per GPU).
        scheduler: address of an existing scheduler to join instead (e.g. dask-jobqueue on SLURM).
        device: ``cuda`` gives each local worker one GPU as the resource ``GPU``.
        threads_per_worker: threads per worker process; also the torch / OpenMP threads of each
            worker (one by default: Dask provides the parallelism).
        synchronous: run every task in this process, without Dask workers.
    """
    if synchronous:
        yield None
        return
    from distributed import Client

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # distributed sets its loggers to INFO when imported; its start/stop chatter drowns the
        # progress bars and summary, so keep it to warnings unless debugging (-v).
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core",
                     "distributed.worker", "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.WARNING)

    if scheduler:
        try:
            client = Client(scheduler)  # waits distributed.comm.timeouts.connect (30 s)
        except (OSError, TimeoutError) as exc:  # an address nobody answers at: before any work
            raise ScreenerError(f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}: {exc}); "
                                "check --scheduler") from exc
        prefer_direct(client)
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
    cluster = local_cluster(workers, threads_per_worker, resources)
    client = Client(cluster)
    prefer_direct(client)
    try:
        yield client
    finally:
        _close_quietly(client, cluster)


#: Dask settings of the local clusters screener starts, which have no dashboard: the services
#: that only feed a dashboard are off or slowed. Each worker's statistical profiler samples the
#: running task's stack every 10 ms, holding the GIL the task needs; the system monitor polls
#: psutil in every process twice a second; every server (scheduler, workers, nannies) wakes
#: every 20 ms to time its own event loop, which only serves a warning when the loop stalls for
#: seconds. On 2 cores an idle 1-worker and an idle 2-worker cluster together take 13 % of a
#: core with Dask's defaults, 4.5 % with these (``benchmarks/idle_clusters.py``); with the
#: workers on every core, this is CPU taken from them (the 2-workers-over-1 ratio of
#: ``benchmarks/run.py``).
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.disk": False,
    "distributed.admin.tick.interval": "200ms",
}


def is_loopback(address: str) -> bool:
    """Whether a Dask address names this machine's loopback interface (no name lookup)."""
    import ipaddress

    from distributed.comm import get_address_host

    try:
        host = get_address_host(address)
    except (ValueError, TypeError):
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prefer_direct(client: Any) -> bool:
    """Let ``client`` take results straight from its workers when every worker is on this machine.

    Dask's default sends each result through the scheduler, which suits a client that cannot
    reach the workers of a remote cluster. Workers listening on this machine's loopback interface
    (a local cluster) are always reachable, and fetching from them directly keeps the
    scheduler's CPU for the workers. A scheduler reached through a tunnel (``localhost`` on this
    side, workers elsewhere) keeps the default, since its workers' addresses are not loopback;
    so does an explicit ``distributed.client.direct-to-workers`` setting.

    Returns:
        Whether results now come straight from the workers.
    """
    import dask

    if dask.config.get("distributed.client.direct-to-workers", None) is not None:
        return bool(client.direct_to_workers)
    workers = client.scheduler_info().get("workers", {})
    if workers and all(is_loopback(address) for address in workers):
        client.direct_to_workers = True
    return bool(client.direct_to_workers)


def local_cluster(workers: int, threads_per_worker: int = 1, resources: dict[str, float] | None = None) -> Any:
    """A LocalCluster of ``workers`` processes, as a screening starts it.

    Args:
        workers: worker processes.
        threads_per_worker: threads of each worker, and its OpenMP/torch threads
            (:func:`worker_environment`).
        resources: resources of each worker (``{"GPU": 1}`` on a GPU machine).

    Returns:
        The started ``distributed.LocalCluster`` (without a dashboard), with
        :data:`LOCAL_CLUSTER_CONFIG` in its scheduler and workers.
    """
    import dask
    from distributed import LocalCluster

    # The thread counts go in twice: before the process starts (for the BLAS libraries) and as
    # the nanny's own environment, which outranks what this process had at the nanny's start (a
    # shell's OMP_NUM_THREADS=4 would otherwise reach every one-thread worker).
    threads = {k: str(threads_per_worker) for k in _THREAD_ENV}
    with dask.config.set({**LOCAL_CLUSTER_CONFIG,
                          "distributed.nanny.pre-spawn-environ": worker_environment(threads_per_worker)}):
        return LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                            dashboard_address=None, resources=resources, silence_logs=logging.ERROR,
                            env=threads)


#: Loggers of the client process that report a closing connection as a traceback.
_SHUTDOWN_LOGGERS = ("distributed.comm", "distributed.core", "distributed.batched", "distributed.client",
                     "distributed.worker", "distributed.nanny", "distributed.scheduler")


def _close_quietly(client: Any, cluster: Any) -> None:
    """Close the client, then the workers and the scheduler, without shutdown tracebacks.

    A worker whose heartbeat meets the closing scheduler logs ``CommClosedError`` with a traceback
    (a WARNING); workers log errors only (``silence_logs``) and the client's distributed loggers
    are held to errors while closing: a clean run prints no traceback.
    """
    saved = {name: logging.getLogger(name).level for name in _SHUTDOWN_LOGGERS}
    for name in _SHUTDOWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        client.close()
        cluster.close()
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def worker_environment(threads_per_worker: int = 1) -> dict[str, str]:
    """Environment set in each local worker process before it starts (restarted workers too).

    Threads: ``threads_per_worker`` for OpenMP/MKL/OpenBLAS (Dask's default is 1). glibc: the
    heap serves allocations up to 32 MiB and keeps up to 256 MiB free, instead of Dask's
    ``MALLOC_TRIM_THRESHOLD_=65536``, which makes every tensor of the model an mmap and its
    pages faults (2-3x slower); the tasks also apply it themselves
    (:func:`screener.core.memory.tune_malloc`), for workers started by other means.
    """
    import dask


    env = {str(k): str(v) for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()}
    env.update({k: str(threads_per_worker) for k in _THREAD_ENV})
    env.update(MALLOC_MMAP_THRESHOLD_=str(MALLOC_MMAP_THRESHOLD), MALLOC_TRIM_THRESHOLD_=str(MALLOC_TRIM_THRESHOLD))
    return env


def hold_worker_threads() -> None:
    """In a Dask worker, hold torch to the worker's threads (``OMP_NUM_THREADS``, one by default).

    Outside a Dask worker torch's threads are left alone.
    """
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return
    import torch

    n = worker_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def worker_threads() -> int:
    """Threads a task may use: ``OMP_NUM_THREADS`` when set (workers get it), else all cores."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


#: Hosts per task on a CPU: small hosts share a task (each task costs the client and the scheduler
#: ~4 ms of CPU, measured with 129 trivial tasks on a local cluster; a catalogue host takes
#: 50-100 ms), up to this many hosts and :data:`GROUP_SITES` sites in all.
GROUP_HOSTS = 4
GROUP_SITES = 128
#: Near the end of a run the groups shrink to single hosts, so that no worker waits on another's
#: last large task: a group holds at most the hosts left / (this x worker threads) ("guided"
#: self-scheduling).
GROUP_GUIDE = 4


def guided_groups(sizes: Sequence[int], threads: int, max_hosts: int = GROUP_HOSTS,
                  max_sites: int = GROUP_SITES) -> list[list[int]]:
    """Cut items, in their order, into consecutive groups that each make one task.

    Args:
        sizes: sites of each host.
        threads: worker threads of the cluster (at least 1).
        max_hosts: most hosts per group.
        max_sites: most sites per group; a larger host is a group of its own.

    Returns:
        Groups of indices into ``sizes``; every index once, in order.
    """
    n = len(sizes)
    slots = GROUP_GUIDE * max(1, int(threads))
    groups: list[list[int]] = []
    i = 0
    while i < n:
        cap = max(1, min(max_hosts, (n - i) // slots))
        group, sites = [i], int(sizes[i])
        i += 1
        while i < n and len(group) < cap and sites + int(sizes[i]) <= max_sites:
            sites += int(sizes[i])
            group.append(i)
            i += 1
        groups.append(group)
    return groups


def total_threads(client: Any) -> int:
    """Worker threads of the cluster behind ``client`` (1 when none has joined yet)."""
    return max(1, sum(client.nthreads().values()))


class TaskRunner:
    """Submit tasks and receive their results as they finish, on Dask or in this process.

    Tasks may be submitted while results are being consumed. A task that raised (after Dask's
    retry) or whose workers kept dying gives its exception as the result.

    Args:
        client: a Dask client, or None to run each task inline (in submission order).
        retries: extra attempts of a task that raises.
    """

    def __init__(self, client: Any, retries: int = 1):
        self.client = client
        self.retries = retries
        self._inline: deque[tuple[Any, Callable, tuple]] = deque()
        self._futures: dict[str, tuple[Any, Any]] = {}
        self._ac: Any = None

    def submit(self, tag: Any, fn: Callable, args: Sequence[Any], key: str | None = None,
               resources: dict | None = None) -> None:
        """Queue ``fn(*args)``; its result comes back with ``tag``.

        Args:
            tag: what :meth:`results` yields with the result.
            fn: the task function (importable, so workers can unpickle it).
            args: its arguments.
            key: Dask key (default: a unique one); content-derived keys make logs readable.
            resources: Dask worker resources the task needs (e.g. ``{"GPU": 1}``).
        """
        if self.client is None:
            self._inline.append((tag, fn, tuple(args)))
            return
        fut = self.client.submit(fn, *args, key=key, pure=False, retries=self.retries,
                                 resources=resources)
        self._futures[fut.key] = (tag, fut)
        if self._ac is None:
            from distributed import as_completed

            self._ac = as_completed([fut])
        else:
            self._ac.add(fut)

    def pending(self) -> int:
        """Tasks submitted and not yet yielded."""
        return len(self._inline) if self.client is None else len(self._futures)

    def results(self) -> Iterator[tuple[Any, Any]]:
        """``(tag, result or exception)`` of every task, as they finish, until none is left."""
        if self.client is None:
            while self._inline:
                tag, fn, args = self._inline.popleft()
                try:
                    res = fn(*args)
                except Exception as exc:  # noqa: BLE001 - the caller turns it into failure rows
                    res = exc
                yield tag, res
            return
        while self._futures:
            assert self._ac is not None
            fut = next(self._ac)
            tag, _ = self._futures.pop(fut.key)
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - incl. KilledWorker after repeated deaths
                res = exc
            fut.release()
            yield tag, res

