""":func:`screen`: hosts -> distinct hops -> bands -> predicted barriers -> ranked tables.

The science lives in the pure tasks of :mod:`screener.screening.tasks`; :func:`screen` runs them on
Dask (a local cluster, an existing scheduler, or synchronously in this process), keeps every
finished piece of work in the run's part store (:mod:`screener.screening.store`) and assembles the
tables from it (:mod:`screener.screening.tables`).

Exactly-once resume: batches are cut from the hops of each host (the CPU default, where each
host task predicts its own hops) or across the hosts in a fixed order (working ion, then item),
so the same inputs always give the same batches and the same keys
(:mod:`screener.screening.keys`). Only the client writes parts, each atomically and recorded in the
manifest after it is in place; a task run twice (a lost worker) therefore changes nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from screener._version import __version__
from screener.core.chemistry import parse_chemistry
from screener.core.errors import ScreenerError
from screener.core.files import write_json_atomic, write_parquet_atomic
from screener.core.progress import progress_bar
from screener.model.predictor import check_model
from screener.model.registry import model_fingerprint, model_version_of
from screener.pathways.config import PathwayConfig
from screener.screening.execution import TaskRunner, dask_client, guided_groups, total_threads
from screener.screening.keys import (
    band_input_hash,
    batch_key,
    cell_hash,
    host_key,
    pathway_settings,
    settings_hash,
)
from screener.screening.store import PartStore, default_out_dir
from screener.screening.tables import FAILURE_COLUMNS, assemble_tables
from screener.screening.tasks import (
    BandSpec,
    PackedStructure,
    default_batch_size,
    failure_message,
    failure_row,
    host_batches,
    host_group_batches,
    host_pathways,
    predict_batch,
    resolve_device,
)
from screener.sources.factory import make_source

log = logging.getLogger(__name__)


@dataclass
class ScreenResult:
    """Tables of a screening run, its metadata, and the exit code it implies."""
    tables: dict[str, pd.DataFrame]
    run_info: dict[str, Any]
    out: Path | None = None

    @property
    def hops(self) -> pd.DataFrame:
        """One row per hop and limit, ranked by predicted barrier."""
        return self.tables["hops"]

    @property
    def structures(self) -> pd.DataFrame:
        """One row per material and working ion, ranked by 1D percolation barrier."""
        return self.tables["structures"]

    @property
    def shortlist(self) -> pd.DataFrame:
        """Materials whose 1D percolation barrier is below the threshold, ranked."""
        return self.tables["shortlist"]

    @property
    def failures(self) -> pd.DataFrame:
        """One row per input (or hop) that failed."""
        return self.tables["failures"]

    @property
    def exit_code(self) -> int:
        """0 when every input was screened, 3 when some failed."""
        return 3 if len(self.failures) else 0


@dataclass
class _HostInput:
    key: str
    item: str
    ion: str
    source: str
    structure: Any


def _json_roundtrip(obj: Any) -> Any:
    """What a part file gives back: the in-memory and the resumed paths see identical data."""
    return json.loads(json.dumps(obj, allow_nan=True))


def _collect_batch(rows: list[dict[str, Any]], predictions: dict[tuple[str, str, str], tuple[float, float]]
                   ) -> list[dict[str, str]]:
    """Add a batch's predicted barriers to ``predictions``; returns its failure rows."""
    failures = []
    for r in rows:
        err = r.get("error_type")
        if err is None or (isinstance(err, float) and math.isnan(err)):
            predictions[(r["material_id"], r["working_ion"], r["hop_id"])] = (float(r["predicted_em_eV"]),
                                                                           float(r["uncertainty_eV"]))
        else:
            failures.append({"item": f"{r['material_id']}#{r['hop_id']}", "working_ion": r["working_ion"],
                             "stage": r["stage"], "error_type": err, "message": r["message"]})
    return failures


def _failed_host(h: _HostInput, exc: BaseException) -> dict[str, Any]:
    return {"item": h.item, "ion": h.ion, "hops": [], "hop_specs": {}, "cell": None, "edges": [],
            "failures": [failure_row(h.item, h.ion, exc, "pathways")], "structure": None}


class Batcher:
    """Cuts batches from the hops of the hosts in a fixed order, as soon as they are known.

    Across hosts (the default, for a GPU's forward passes): a batch is emitted once every host
    before its last hop has a result, so a batch's content depends only on the inputs, never on
    the order in which tasks finished. Per host (``per_host=True``, the CPU path): each host's
    hops are cut on their own, in the order of its ``hop_specs``, as
    :func:`~screener.screening.tasks.host_batches` cuts them.
    """

    def __init__(self, order: list[str], batch_size: int, config: PathwayConfig, per_host: bool = False):
        self.order = order
        self.batch_size = batch_size
        self.config = config
        self.per_host = per_host
        self.results: dict[str, dict[str, Any]] = {}
        self._next = 0
        self._buffer: list[tuple[tuple[str, str, str], BandSpec]] = []

    def _specs(self, res: dict[str, Any]) -> list[tuple[tuple[str, str, str], BandSpec]]:
        cell = res.get("cell")
        return [((res["item"], res["ion"], hop_id), BandSpec(cell, res["ion"], hop, self.config))
                for hop_id, hop in res.get("hop_specs", {}).items()]

    def add(self, key: str, result: dict[str, Any]) -> list[list[tuple[tuple[str, str, str], BandSpec]]]:
        """Record a host result; returns the batches it completes."""
        self.results[key] = result
        if self.per_host:
            specs = self._specs(result)
            return [specs[i : i + self.batch_size] for i in range(0, len(specs), self.batch_size)]
        while self._next < len(self.order) and self.order[self._next] in self.results:
            self._buffer.extend(self._specs(self.results[self.order[self._next]]))
            self._next += 1
        n_full = len(self._buffer) // self.batch_size * self.batch_size
        out = [self._buffer[i : i + self.batch_size] for i in range(0, n_full, self.batch_size)]
        self._buffer = self._buffer[n_full:]
        if self._next == len(self.order) and self._buffer:
            out.append(self._buffer)
            self._buffer = []
        return out


def screen(
    chemistry: str | list[str] = "Mg",
    source: Any = None,
    out: str | Path | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    synchronous: bool = False,
    batch_size: int | None = None,
    threshold: float = 0.65,
    model_dir: str | None = None,
    device: str = "auto",
    pathways: PathwayConfig | None = None,
    quiet: bool = True,
    write: bool | None = None,
    resume: bool = True,
    fuse: bool | None = None,
) -> ScreenResult:
    """Screen hosts for fast migration of one or more working ions.

    With ``write``, finished work is kept in ``<out>/_parts``: running the same call again after
    an interruption (even ``kill -9``) does only the work left, and the tables are the same as
    an uninterrupted run's, one row per hop. A rerun of a finished run does no screening work.

    Args:
        chemistry: working ion(s), e.g. ``"Mg"``, ``"Mg,Ca"`` or ``["Mg", "Ca"]``.
        source: ``"bundled"``, ``"mp"``, a path, a Source object, or None for the default.
        out: folder for the tables, ``run.json`` and the resumable parts; without it nothing is
            written and the tables are only returned (``write=True`` without ``out`` writes to
            ``runs/<chemistry>-<UTC date>`` of the current folder).
        workers: worker processes of a local Dask cluster (default: the CPU cores).
        scheduler: address of an existing Dask scheduler to use instead.
        synchronous: run in this process without Dask workers.
        batch_size: hops per model batch (default: :func:`default_batch_size` of the device:
            32 on a GPU, 8 on a CPU).
        threshold: a material passes when its 1D percolation barrier is below this (eV).
        model_dir: model directory (default: the shipped model).
        device: ``auto``, ``cpu`` or ``cuda``.
        pathways: hop finding settings.
        quiet: no progress bars.
        write: write the tables, ``run.json`` and the parts (default: when ``out`` is given).
        resume: reuse the parts of an earlier run into ``out`` (False deletes them first).
        fuse: predict each host's hops in the task that found them, in batches of ``batch_size``
            that never span hosts (default: on a CPU, where batching across hosts buys nothing
            and a second task per batch only costs scheduling and transfer). False: separate
            model tasks whose batches span hosts (the default on a GPU, to fill forward passes).

    Returns:
        The tables (hops, structures, shortlist, failures) and the run metadata.

    Raises:
        ModelLoadError: the model cannot be loaded.
        ScreenerError: the source cannot be read, or another run is writing to ``out``.
    """

    t_start = time.perf_counter()
    ions = parse_chemistry(chemistry)
    if batch_size is None:
        batch_size = default_batch_size(resolve_device(device))
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    pw_config = pathways or PathwayConfig()
    model_version = model_version_of(model_dir)
    model_fp = model_fingerprint(model_dir)
    check_model(model_dir)
    src = (make_source(None if source is None else str(source), sites=pw_config.sites)
           if source is None or isinstance(source, (str, Path)) else source)
    settings = settings_hash(pw_config)
    timings: dict[str, float] = {k: 0.0 for k in ("source", "pathways", "bands", "inputs", "model",
                                                  "model_load", "writing")}

    # ------------------------------------------------------------------ inputs
    t0 = time.perf_counter()
    hosts: dict[str, _HostInput] = {}
    early_failures = []
    n_inputs = 0
    for ion in ions:
        for h in src.fetch(ion):
            n_inputs += 1
            if h.structure is None:
                early_failures.append(failure_row(h.item, ion, h.error or ScreenerError("unreadable"), "read"))
                continue
            key = host_key(h.item, ion, src.name, h.structure, pw_config)
            if key in hosts:
                log.warning("%s (%s) is listed twice with the same structure: screened once", h.item, ion)
                continue
            hosts[key] = _HostInput(key, h.item, ion, src.name, h.structure)
    timings["source"] = time.perf_counter() - t0
    order = sorted(hosts, key=lambda k: (ions.index(hosts[k].ion), hosts[k].item, k))

    # ------------------------------------------------------------------ part store
    store = None
    out_dir = None
    if write is None:
        write = out is not None
    if write:
        out_dir = Path(out) if out else default_out_dir(ions)
        log.info("writing the tables to %s", out_dir.resolve())
        store = PartStore(out_dir, header={"screener": __version__, "model": model_fp,
                                           "settings": settings, "chemistry": ions}, fresh=not resume)
    # The folder stays locked until its tables and run.json are written, so that a second run
    # into it finds none of them half-written.
    try:
        tables, info = _run_pipeline(
            hosts, order, store, workers=workers, scheduler=scheduler,
            synchronous=synchronous, batch_size=batch_size, model_dir=model_dir, device=device,
            pw_config=pw_config, model_fp=model_fp, settings_hash=settings,
            model_version=model_version, threshold=threshold, quiet=quiet, timings=timings, fuse=fuse,
        )
        if early_failures:
            early = pd.DataFrame(early_failures, columns=FAILURE_COLUMNS)
            tables["failures"] = pd.concat([early, tables["failures"]], ignore_index=True)
        run_info = {
            "screener_version": __version__,
            "model_version": model_version,
            "source": src.name,
            # Where a file source read from, so `export`/`refine` can re-read the structures.
            "source_path": str(Path(src.path).resolve()) if hasattr(src, "path") else None,
            "source_database_version": src.database_version(),
            # What the structure reader warned about, with how many files each concerned.
            "reader_warnings": {msg: len(files) for msg, files in getattr(src, "reader_warnings", {}).items()},
            "chemistry": ions,
            "config": {"threshold": threshold, "batch_size": batch_size, "fuse": info["fuse"], "workers": workers,
                       "scheduler": bool(scheduler), "synchronous": synchronous, "device": info["device"],
                       "pathways": pathway_settings(pw_config)},
            "counts": {"hosts": n_inputs, "hops": len(tables["hops"]),
                       "hops_predicted": int(tables["hops"]["predicted_em_eV"].notna().sum()),
                       "structures": len(tables["structures"]), "shortlist": len(tables["shortlist"]),
                       "failures": len(tables["failures"])},
            "resume": info["resume"],
            "workers": info["workers"],
            "timings_s": timings,
        }
        result = ScreenResult(tables, run_info)
        if write and out_dir is not None:
            tw = time.perf_counter()
            out_dir.mkdir(parents=True, exist_ok=True)
            for name, df in tables.items():
                write_parquet_atomic(df, out_dir / f"{name}.parquet")
            timings["writing"] += time.perf_counter() - tw
            timings["total"] = time.perf_counter() - t_start
            write_json_atomic(run_info, out_dir / "run.json")
            result.out = out_dir
        else:
            timings["total"] = time.perf_counter() - t_start
        return result
    finally:
        if store is not None:
            store.close()


def _run_pipeline(hosts: dict[str, _HostInput], order: list[str], store: Any, *, workers: int | None,
                  scheduler: str | None, synchronous: bool, batch_size: int, model_dir: str | None,
                  device: str, pw_config: PathwayConfig, model_fp: str, settings_hash: str, model_version: str, threshold: float,
                  quiet: bool, timings: dict[str, float], fuse: bool | None = None,
                  ) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Run the host and batch tasks still to do, store them, and assemble the tables."""
    device_used = resolve_device(device)
    fuse = device_used == "cpu" if fuse is None else bool(fuse)
    batcher = Batcher(order, batch_size, pw_config, per_host=fuse)
    batches: list[tuple[str, list[tuple[str, str, str]]]] = []
    batch_keys: dict[str, list[tuple[str, str, str]]] = {}
    predictions: dict[tuple[str, str, str], tuple[float, float]] = {}
    batch_failures: dict[str, list[dict[str, str]]] = {}  # per batch read, in batch order later
    errors: dict[str, list[dict[str, str]]] = {}
    counts = {"hosts_total": len(order), "hosts_from_parts": 0, "hosts_run": 0, "hosts_crashed": 0,
              "batches_total": 0, "batches_from_parts": 0, "batches_run": 0, "batches_crashed": 0}
    rss: dict[int, float] = {}
    resources = {"GPU": 1} if device_used == "cuda" and scheduler is None and not synchronous else None
    # Dask keys name the content (readable logs) plus this run, so that a scheduler shared by
    # successive runs never hands one run a result another run computed.
    run_token = os.urandom(4).hex()

    with dask_client(workers, scheduler, device_used, synchronous=synchronous) as client, \
            progress_bar(quiet) as progress:
        t_wall = time.perf_counter()
        runner = TaskRunner(client)
        bar_hosts = progress.add_task("hosts", total=len(order)) if progress is not None else None
        bar_batches = progress.add_task("hop batches", total=0) if progress is not None else None

        def finish_batch(key: str, res: Any) -> None:
            """Store a batch's predictions (or its failure) and collect them."""
            keys = batch_keys[key]
            if isinstance(res, BaseException):
                counts["batches_crashed"] += 1
                log.warning("a batch of %d hops failed: %s", len(keys), failure_message(res))
                errors[key] = [failure_row(f"{m}#{hop}", ion, res, "model") for m, ion, hop in keys]
            else:
                counts["batches_run"] += 1
                for stage, sec in res["seconds"].items():
                    timings[stage] = timings.get(stage, 0.0) + float(sec)
                pid = int(res.get("pid", 0))
                rss[pid] = max(rss.get(pid, 0.0), float(res.get("peak_rss_mib", 0.0)))
                if store is not None:
                    tw = time.perf_counter()
                    store.put_batch(key, res["rows"])
                    timings["writing"] += time.perf_counter() - tw
                # This run's batches are not read back from their parts.
                batch_failures[key] = _collect_batch(res["rows"], predictions)
            if progress is not None:
                progress.advance(bar_batches)

        cell_hashes: dict[tuple[str, str], str] = {}

        def emit(new_batches: list, done: dict[tuple, Any] | None = None) -> None:
            """Queue the batches a host completed; ``done``: those its own task predicted."""
            for batch in new_batches:
                keys = [k for k, _ in batch]
                inputs = []
                for (item, ion, _), spec in batch:  # a host's hops share its cell: hashed once
                    if (item, ion) not in cell_hashes:
                        cell_hashes[item, ion] = cell_hash(spec.cell)
                    inputs.append(band_input_hash(cell_hashes[item, ion], spec.hop))
                bkey = batch_key(keys, model_fp, settings_hash, inputs)
                batches.append((bkey, keys))
                batch_keys[bkey] = keys
                counts["batches_total"] += 1
                if progress is not None:
                    progress.update(bar_batches, total=counts["batches_total"])
                if store is not None and store.has("batch", bkey):
                    counts["batches_from_parts"] += 1
                    if progress is not None:
                        progress.advance(bar_batches)
                    continue
                res = (done or {}).get(tuple(keys))
                if res is not None:
                    finish_batch(bkey, res)
                    continue
                specs = [spec for _, spec in batch]
                runner.submit(("batch", bkey), predict_batch, (keys, specs, model_dir, device_used, batch_size),
                              key=f"predict_batch-{bkey[:16]}-{run_token}", resources=resources)

        def submit_host(key: str, fused: bool) -> None:
            h = hosts[key]
            packed = PackedStructure.pack(h.structure)
            if fused:
                runner.submit(("host", key), host_batches,
                              (h.item, packed, h.ion, h.source, pw_config, model_dir, device_used, batch_size),
                              key=f"host_pathways-{key[:16]}-{run_token}", resources=resources)
            else:
                runner.submit(("host", key), host_pathways, (h.item, packed, h.ion, h.source, pw_config),
                              key=f"host_pathways-{key[:16]}-{run_token}-plain")

        def submit_group(keys: list[str]) -> None:
            """Several small hosts in one host-and-predict task (see :func:`guided_groups`)."""
            if len(keys) == 1:
                submit_host(keys[0], True)
                return
            args = [(hosts[k].item, PackedStructure.pack(hosts[k].structure), hosts[k].ion, hosts[k].source)
                    for k in keys]
            runner.submit(("group", tuple(keys)), host_group_batches,
                          (args, pw_config, model_dir, device_used, batch_size),
                          key=f"host_group-{keys[0][:16]}-{len(keys)}-{run_token}", resources=resources)

        stored: dict[str, dict[str, Any]] = {}
        to_run: list[str] = []
        for key in order:  # host tasks first: their failures show early, batches follow them
            part = store.host(key) if store is not None else None
            if part is not None:
                stored[key] = part
            else:
                to_run.append(key)
        if fuse and client is not None:  # small hosts share a task; singles toward the end
            for group in guided_groups([len(hosts[k].structure) for k in to_run], total_threads(client)):
                submit_group([to_run[i] for i in group])
        else:
            for key in to_run:
                submit_host(key, fuse)
        for key, part in stored.items():
            counts["hosts_from_parts"] += 1
            if progress is not None:
                progress.advance(bar_hosts)
            emit(batcher.add(key, part))

        unfused: set[str] = set()  # hosts whose host-and-predict task failed, run again in two steps

        def finish_host(key: str, res: Any) -> None:
            """Store a host's hops (and the batches its task predicted), or run it again apart."""
            h = hosts[key]
            done: dict[tuple, Any] = {}
            if isinstance(res, BaseException) and fuse and key not in unfused:
                # A crash while predicting (a dying worker, out of memory) must not cost the
                # host its hops: find them alone, then predict each batch in a task of its own,
                # where a batch that crashes again fails alone, as a model failure.
                log.info("%s (%s): host task failed (%s); finding its hops and predicting them apart",
                         h.item, h.ion, failure_message(res))
                unfused.add(key)
                submit_host(key, False)
                return
            if isinstance(res, BaseException):
                log.warning("%s (%s): task failed: %s", h.item, h.ion, failure_message(res))
                counts["hosts_crashed"] += 1
                result = _failed_host(h, res)
            else:
                counts["hosts_run"] += 1
                done = {tuple(tuple(k) for k in b["keys"]): b["result"] for b in res.pop("batches", [])}
                timings["pathways"] += float(res.get("seconds", 0.0))
                rss[int(res.get("pid", 0))] = max(rss.get(int(res.get("pid", 0)), 0.0),
                                                  float(res.get("peak_rss_mib", 0.0)))
                if store is not None:  # the part's own bytes, as a resumed run reads them
                    tw = time.perf_counter()
                    result = json.loads(store.put_host(key, h.item, res))
                    timings["writing"] += time.perf_counter() - tw
                else:
                    result = _json_roundtrip(res)
            if progress is not None:
                progress.advance(bar_hosts)
            emit(batcher.add(key, result), done)

        for (kind, key), res in runner.results():
            if kind == "group":
                if isinstance(res, BaseException):
                    # One of them may be what crashed the worker: each host goes on alone.
                    log.info("a task of %d hosts failed (%s); running each host in a task of its own",
                             len(key), failure_message(res))
                    for k in key:
                        submit_host(k, True)
                else:
                    for k, r in zip(key, res, strict=True):
                        finish_host(k, r)
            elif kind == "host":
                finish_host(key, res)
            else:
                finish_batch(key, res)
        timings["screening_wall"] = time.perf_counter() - t_wall

    # ------------------------------------------------------------------ assemble from the parts
    t3 = time.perf_counter()
    # Batches in the order of their hosts, whatever order the host tasks finished in (host
    # batches are emitted as each host finishes; across hosts they already come in this order).
    rank = {(hosts[k].item, hosts[k].ion): i for i, k in enumerate(order)}
    batches.sort(key=lambda b: rank.get((b[1][0][0], b[1][0][1]), len(rank)) if b[1] else len(rank))
    extra_failures: list[dict[str, str]] = []
    for bkey, keys in batches:
        if bkey in errors:
            extra_failures.extend(errors[bkey])
            continue
        if bkey not in batch_failures:  # done by an earlier run
            rows = store.batch(bkey) if store is not None else None
            if rows is None:  # a part damaged since it was checked: its hops stay unpredicted
                extra_failures.extend(failure_row(f"{m}#{hop}", ion, ScreenerError(
                    "the stored prediction of this hop is missing or damaged; rerun to recompute it"), "model")
                    for m, ion, hop in keys)
                continue
            batch_failures[bkey] = _collect_batch(rows, predictions)
        extra_failures.extend(batch_failures[bkey])
    host_results = [batcher.results[k] for k in order]
    tables = assemble_tables(host_results, predictions, model_version, threshold)
    if extra_failures:
        tables["failures"] = pd.concat([tables["failures"], pd.DataFrame(extra_failures, columns=FAILURE_COLUMNS)],
                                       ignore_index=True)
    timings["assemble"] = time.perf_counter() - t3
    rss.pop(0, None)
    info = {"device": device_used, "fuse": fuse, "resume": counts,
            "workers": {"processes": len(rss),
                        "peak_rss_mib": round(max(rss.values()), 1) if rss else None}}
    return tables, info
