"""Nightly screening: pull, diff, screen the delta, append to a dataset, refresh the latest tables.

The engine of ``screener nightly`` (``python -m pipelines.nightly``) and of ``screener run --source mp``.

1. **Pull and diff.** ``--source mp`` syncs the local Materials Project cache (see
   :mod:`screener.sources.mp`): a cheap listing of ids and ``last_updated`` stamps, then structures only
   for new or changed materials. Other sources are read whole and diffed by structure hash against
   the previous latest tables.
2. **Plan.** A material is screened again only when the newest result in the dataset is for
   another structure (hash), another model version or other pathway settings; when the model
   version changed, that is every material of the chemistry.
3. **Screen** the delta with :func:`screener.screening.run.screen` (``write=False``) on a source that
   yields only those hosts.
4. **Append** to a Parquet dataset partitioned by date and chemistry::

       <results>/hops/date=YYYY-MM-DD/chemistry=Mg/part-<run id>.parquet
       <results>/structures/..., <results>/failures/..., <results>/screened/...

   ``screened`` has one row per material screened (stamp, structure hash, model version, run id).
5. **Refresh** ``<results>/latest/`` from the newest result of every current material:
   ``chemistry=<ion>/{hops,structures,failures,materials}.parquet`` and, over all chemistries,
   ``hops``, ``structures``, ``shortlist``, ``failures`` and ``run.json``. A file is rewritten only
   when its bytes would change, so a second run in a row does no work and changes nothing.

The same engine (:func:`screen_increment`) serves ``screener run --source mp`` (:func:`run_incremental`),
with its dataset under ``<cache>/results``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.results import SCREENED_COLUMNS, ResultsDataset
from screener._version import __version__
from screener.core.chemistry import parse_chemistry
from screener.core.files import parquet_bytes, write_bytes_atomic, write_if_changed
from screener.model.registry import model_fingerprint, model_version_of
from screener.pathways.config import PathwayConfig
from screener.screening.keys import settings_hash
from screener.screening.run import ScreenResult, screen
from screener.screening.store import default_out_dir, write_run
from screener.screening.tables import counts_of, ranked_tables
from screener.sources.base import DeltaSource, HostItem
from screener.sources.incremental import SnapshotSource
from screener.sources.mp.delta import Delta

log = logging.getLogger(__name__)


def work_key(plan: dict[str, list[str]], deltas: dict[str, Any], fingerprint: str, chash: str,
             source: str) -> str:
    """Name of the work folder of one screening plan: materials (with their structure hashes),
    model, settings and source."""
    d = {"plan": {ion: {mid: deltas[ion].members[mid].structure_hash for mid in sorted(ids)}
                  for ion, ids in sorted(plan.items()) if ids},
         "model": fingerprint, "config": chash, "source": source}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def new_run_id(now: _dt.datetime | None = None) -> str:
    """A run id that sorts chronologically: ``YYYYmmddTHHMMSSffffffZ`` (UTC)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


@dataclass
class IncrementResult:
    """Outcome of an incremental screening.

    Attributes:
        ions: chemistries handled.
        deltas: what changed per chemistry.
        screened: ids screened this time, per chemistry.
        model_changed: chemistries re-screened whole because the model version changed.
        latest: per chemistry, the newest tables of every current material.
        run_info: metadata (counts, deltas, timings).
        new_failures: failure rows of the materials screened this time.
    """

    ions: list[str]
    deltas: dict[str, Delta]
    screened: dict[str, list[str]]
    model_changed: list[str]
    latest: dict[str, dict[str, pd.DataFrame]]
    run_info: dict[str, Any]
    new_failures: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_screened(self) -> int:
        """Materials screened this time."""
        return sum(len(v) for v in self.screened.values())


def _as_incremental(source: Any, results: ResultsDataset) -> Any:
    if getattr(source, "incremental", False):
        return source
    return SnapshotSource(source, results.previous_members)


def screen_increment(
    chemistry: str | list[str],
    source: Any,
    results: ResultsDataset,
    *,
    threshold: float = 0.65,
    model_dir: str | None = None,
    pathways: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    synchronous: bool = False,
    batch_size: int | None = None,
    device: str = "auto",
    quiet: bool = True,
    now: _dt.datetime | None = None,
    fuse: bool | None = None,
) -> IncrementResult:
    """Sync ``source``, screen what changed, append it to ``results``; return the newest tables.

    Args:
        chemistry: working ion(s).
        source: an incremental source (:class:`~screener.sources.mp.source.MPSource`) or any Source (diffed by
            structure hash).
        results: where results accumulate.
        threshold, model_dir, pathways, workers, scheduler, synchronous, batch_size, device, quiet, fuse:
            as for :func:`screener.screening.run.screen`.
        now: the run's time (UTC; default now): names the date partition and the run id.
    """

    ions = parse_chemistry(chemistry)
    pw = pathways or PathwayConfig()
    chash = settings_hash(pw)
    model_version = model_version_of(model_dir)
    fingerprint = model_fingerprint(model_dir)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    run_id, date = new_run_id(now), now.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d")
    src = _as_incremental(source, results)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    deltas: dict[str, Delta] = {}
    plan: dict[str, list[str]] = {}
    model_changed = []
    for ion in ions:
        delta = deltas[ion] = src.sync(ion)
        newest = results.newest_screened(ion)
        todo = []
        stale_model = 0
        for mid, m in delta.members.items():
            if mid not in newest.index:
                todo.append(mid)
                continue
            row = newest.loc[mid]
            if row["model_fingerprint"] != fingerprint:
                stale_model += 1
            if (row["structure_hash"] != m.structure_hash or row["model_fingerprint"] != fingerprint
                    or row["config_hash"] != chash):
                todo.append(mid)
        if stale_model:
            model_changed.append(ion)
            log.info("%s: the model changed (now %s): re-screening all %d materials", ion, fingerprint,
                     len(delta.members))
            todo = sorted(delta.members)
        plan[ion] = todo
        log.info("%s: %d to screen, %d reused", ion, len(todo), len(delta.members) - len(todo))
    timings["sync"] = time.perf_counter() - t0

    screen_info: dict[str, Any] = {}
    new_failures = 0
    work = {ion: src.items(ion, ids) for ion, ids in plan.items() if ids}
    if work:
        t1 = time.perf_counter()
        # Finished hosts and model batches are kept in a work folder named by the plan, so a run
        # killed before it appends its results redoes only the work left when it is run again
        # (the same plan gives the same folder); the folder goes once the results are appended.
        work_dir = results.root / "_work" / work_key(plan, deltas, fingerprint, chash, src.name)
        res = screen(list(work), DeltaSource(src.name, work, src.database_version()), work_dir,
                     workers=workers, scheduler=scheduler, synchronous=synchronous, batch_size=batch_size,
                     threshold=threshold, model_dir=model_dir, device=device, pathways=pw, quiet=quiet,
                     write=True, resume=True, fuse=fuse)
        screen_info = res.run_info
        timings["screen"] = time.perf_counter() - t1
        new_failures = len(res.failures)
        for ion, items in work.items():
            _append_results(results, res.tables, ion, items, deltas[ion], model_version, fingerprint, chash,
                            run_id, date)
        shutil.rmtree(work_dir, ignore_errors=True)
    latest = {ion: results.latest_for(ion, list(deltas[ion].members)) for ion in ions}
    timings["total"] = time.perf_counter() - t0

    by_ion = {}
    for ion in ions:
        c = deltas[ion].counts()
        c.update({"members": len(deltas[ion].members), "screened": len(plan[ion]),
                  "reused": len(deltas[ion].members) - len(plan[ion]), "model_changed": ion in model_changed})
        by_ion[ion] = c
    totals = {k: sum(by_ion[i][k] for i in ions) for k in
              ("members", "new", "changed", "unchanged", "removed", "downloaded", "screened", "reused")}
    db_versions = sorted({d.db_version for d in deltas.values() if d.db_version})
    run_info = {
        "screener_version": __version__,
        "model_version": model_version,
        "model_fingerprint": fingerprint,
        "source": src.name,
        "source_database_version": db_versions[-1] if db_versions else None,
        "chemistry": ions,
        "run_id": run_id,
        "date": date,
        "incremental": {"totals": totals, "by_chemistry": by_ion, "offline": any(d.offline for d in deltas.values())},
        "config": {"threshold": threshold,
                   "batch_size": screen_info.get("config", {}).get("batch_size", batch_size),
                   "workers": workers,
                   "scheduler": bool(scheduler), "synchronous": synchronous,
                   "device": screen_info.get("config", {}).get("device", device),
                   "pathways": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(pw).items()},
                   "config_hash": chash},
        "timings_s": {**timings, **{f"screen_{k}": v for k, v in screen_info.get("timings_s", {}).items()}},
        "resume": screen_info.get("resume"),
    }
    if hasattr(src, "describe_options"):
        run_info["config"]["source"] = src.describe_options()
    return IncrementResult(ions, deltas, plan, model_changed, latest, run_info, new_failures, timings)


def _append_results(results: ResultsDataset, tables: dict[str, pd.DataFrame], ion: str, items: list[HostItem],
                    delta: Delta, model_version: str, fingerprint: str, chash: str, run_id: str,
                    date: str) -> None:
    ids = {h.item for h in items}

    def mine(df: pd.DataFrame, col: str) -> pd.DataFrame:
        if not len(df):
            return df.iloc[0:0]
        key = df[col].astype(str).str.split("#").str[0]
        return df[(df["working_ion"] == ion) & key.isin(ids)].copy()

    hops = mine(tables["hops"], "material_id")
    structures = mine(tables["structures"], "material_id")
    failures = mine(tables["failures"], "item")
    if len(failures):
        failures.insert(0, "material_id", failures["item"].astype(str).str.split("#").str[0])
    for df in (hops, structures, failures):
        df["run_id"] = run_id
    screened = pd.DataFrame(
        [{"material_id": mid, "working_ion": ion, "last_updated": delta.members[mid].last_updated,
          "structure_hash": delta.members[mid].structure_hash, "db_version": delta.db_version,
          "model_version": model_version, "model_fingerprint": fingerprint, "config_hash": chash,
          "run_id": run_id}
         for mid in sorted(ids) if mid in delta.members], columns=SCREENED_COLUMNS)
    results.append(date, ion, run_id, {"hops": hops, "structures": structures, "failures": failures,
                                       "screened": screened})


def combined_tables(latest: dict[str, dict[str, pd.DataFrame]], threshold: float) -> dict[str, pd.DataFrame]:
    """Hops, structures, shortlist and failures over several chemistries' latest tables."""
    def cat(name: str) -> pd.DataFrame:
        frames = [t[name] for t in latest.values() if len(t[name])]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return ranked_tables(cat("hops"), cat("structures"), cat("failures"), threshold)


def run_incremental(chemistry: str | list[str], source: Any, out: str | Path | None, *,
                    results_dir: str | Path | None = None, **kwargs: Any) -> Any:
    """``screener run`` on an incremental source: screen what changed, write every current material.

    Results accumulate in ``results_dir`` (default ``<cache>/results``); ``out`` gets the usual
    tables and a ``run.json`` whose ``counts`` include new/changed/unchanged/removed.

    Returns:
        A :class:`screener.screening.run.ScreenResult`.
    """

    root = Path(results_dir) if results_dir else Path(source.cache.root) / "results"
    dataset = ResultsDataset(root)
    with dataset.lock():
        inc = screen_increment(chemistry, source, dataset, **kwargs)
    tables = combined_tables(inc.latest, kwargs.get("threshold", 0.65))
    info = inc.run_info
    totals = info["incremental"]["totals"]
    info["counts"] = {"hosts": totals["members"], **counts_of(tables),
                      **{k: totals[k] for k in ("new", "changed", "unchanged", "removed", "screened", "reused")}}
    out_dir = Path(out) if out else default_out_dir(inc.ions)
    tw = time.perf_counter()
    write_run(out_dir, tables, info)
    info["timings_s"]["writing"] = time.perf_counter() - tw
    write_run(out_dir, {}, info)
    return ScreenResult(tables, info, out_dir)


def refresh_latest(results: ResultsDataset, inc: IncrementResult, threshold: float) -> list[Path]:
    """Rewrite the ``latest/`` files whose content changed; returns the files written."""
    written = []
    for ion, tables in inc.latest.items():
        folder = results.latest_dir / f"chemistry={ion}"
        final = ranked_tables(tables["hops"], tables["structures"], tables["failures"], threshold)
        for name in ("hops", "structures", "failures"):
            if write_if_changed(parquet_bytes(final[name]), folder / f"{name}.parquet"):
                written.append(folder / f"{name}.parquet")
        if write_if_changed(parquet_bytes(tables["materials"]), folder / "materials.parquet"):
            written.append(folder / "materials.parquet")
    # Combined over every chemistry with latest tables, read back from disk (so a rerun computes
    # exactly the same bytes).
    per_ion = {}
    for ion in results.latest_chemistries():
        folder = results.latest_dir / f"chemistry={ion}"
        per_ion[ion] = {n: pd.read_parquet(folder / f"{n}.parquet") for n in ("hops", "structures", "failures")}
    combined = combined_tables(per_ion, threshold) if per_ion else None
    if combined is not None:
        for name, df in combined.items():
            if write_if_changed(parquet_bytes(df), results.latest_dir / f"{name}.parquet"):
                written.append(results.latest_dir / f"{name}.parquet")
        mats = [pd.read_parquet(results.latest_dir / f"chemistry={i}" / "materials.parquet") for i in per_ion]
        mats = pd.concat([m for m in mats if len(m)], ignore_index=True) if any(len(m) for m in mats) else None
        summary = {
            "chemistry": sorted(per_ion),
            "threshold": threshold,
            "model_versions": sorted(set(mats["model_version"])) if mats is not None else [],
            "newest_run_id": str(mats["run_id"].max()) if mats is not None else None,
            "materials": {i: int((mats["working_ion"] == i).sum()) if mats is not None else 0 for i in sorted(per_ion)},
            "counts": counts_of(combined),
        }
        data = json.dumps(summary, indent=1, sort_keys=True, default=str).encode()
        if write_if_changed(data, results.latest_dir / "run.json"):
            written.append(results.latest_dir / "run.json")
    return written


def nightly(chemistry: str | list[str], source: Any, results_dir: str | Path, *, threshold: float = 0.65,
            **kwargs: Any) -> tuple[IncrementResult, list[Path]]:
    """One nightly pass: sync, screen the delta, append, refresh ``latest/``.

    Returns:
        The increment and the files written (empty when nothing changed).
    """
    results = ResultsDataset(results_dir)
    with results.lock():
        inc = screen_increment(chemistry, source, results, threshold=threshold, **kwargs)
        written = refresh_latest(results, inc, threshold)
        if inc.n_screened or written:
            path = results.root / "runs" / f"date={inc.run_info['date']}" / f"run-{inc.run_info['run_id']}.json"
            info = {**inc.run_info, "files_written": [str(p.relative_to(results.root)) for p in written]}
            write_bytes_atomic(json.dumps(info, indent=1, default=str, allow_nan=True).encode(), path)
    return inc, written
