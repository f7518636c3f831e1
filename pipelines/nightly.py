"""Nightly screening: pull, diff, screen the delta, append to a dataset, refresh the latest tables.

``python -m pipelines.nightly --chemistry Mg,Ca,Zn [--source mp|bundled|PATH] [--results DIR]``

1. **Pull and diff.** ``--source mp`` syncs the local Materials Project cache (see
   :mod:`screener._mp`): a cheap listing of ids and ``last_updated`` stamps, then structures only
   for new or changed materials. Other sources are read whole and diffed by structure hash against
   the previous latest tables.
2. **Plan.** A material is screened again only when the newest result in the dataset is for
   another structure (hash), another model version or other pathway settings; when the model
   version changed, that is every material of the chemistry.
3. **Screen** the delta with :func:`screener._screen.screen` (``write=False``) on a source that
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

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from screener._errors import ScreenerError
from screener._mp import Delta, Member, diff_members
from screener._sources import HostItem

log = logging.getLogger("pipelines.nightly")

TABLES = ("hops", "structures", "failures", "screened")
SCREENED_COLUMNS = ["material_id", "working_ion", "last_updated", "structure_hash", "db_version",
                    "model_version", "model_fingerprint", "config_hash", "run_id"]
MATERIAL_COLUMNS = ["material_id", "working_ion", "last_updated", "structure_hash", "model_version", "run_id"]


# ----------------------------------------------------------------------------- small helpers
def _parquet_bytes(df: pd.DataFrame) -> bytes:
    """Parquet bytes of a table (pandas' schema metadata only: no settings, no secrets)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False), sink)
    return sink.getvalue().to_pybytes()


def _write_atomic(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_if_changed(data: bytes, path: Path) -> bool:
    """Write ``data`` to ``path`` unless the file already holds exactly these bytes."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    _write_atomic(data, path)
    return True


def work_key(plan: dict[str, list[str]], deltas: dict[str, Any], fingerprint: str, chash: str,
             source: str) -> str:
    """Name of the work folder of one screening plan: materials (with their structure hashes),
    model, settings and source."""
    d = {"plan": {ion: {mid: deltas[ion].members[mid].structure_hash for mid in sorted(ids)}
                  for ion, ids in sorted(plan.items()) if ids},
         "model": fingerprint, "config": chash, "source": source}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_hash(pathways: Any) -> str:
    """Short hash of the pathway settings (results of other settings are not reused)."""
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(pathways).items()}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def model_fingerprint(model_dir: str | None) -> str:
    """``name@version#<sha256 of model.json>``: a retrained model counts as another model."""
    from screener._predictor import default_model_dir
    from screener._screen import model_version_of

    path = (Path(model_dir) if model_dir else default_model_dir()) / "model.json"
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        digest = "unreadable"
    return f"{model_version_of(model_dir)}#{digest}"


def new_run_id(now: _dt.datetime | None = None) -> str:
    """A run id that sorts chronologically: ``YYYYmmddTHHMMSSffffffZ`` (UTC)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def shortlist_table(structures: pd.DataFrame, hops: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Ranked shortlist from structures and hops (``passes`` must already reflect ``threshold``)."""
    from screener._screen import shortlist_table as _shortlist

    return _shortlist(structures, hops)


def final_tables(hops: pd.DataFrame, structures: pd.DataFrame, failures: pd.DataFrame,
                 threshold: float) -> dict[str, pd.DataFrame]:
    """The four tables of a run, in run order and schema, with ``passes`` for ``threshold``."""
    from screener._screen import FAILURE_COLUMNS, HOP_COLUMNS, STRUCTURE_COLUMNS

    hops = hops.reindex(columns=HOP_COLUMNS).sort_values(
        ["predicted_em_eV", "material_id", "hop_id", "limit"], na_position="last", kind="mergesort"
    ).reset_index(drop=True)
    structures = structures.reindex(columns=STRUCTURE_COLUMNS).copy()
    structures["passes"] = (structures["percolation_1d_eV"].astype(float) < threshold).astype(bool)
    structures = structures.sort_values(["percolation_1d_eV", "lowest_hop_em_eV", "material_id", "working_ion"],
                                        kind="mergesort").reset_index(drop=True)
    failures = failures.reindex(columns=FAILURE_COLUMNS).sort_values(
        ["working_ion", "item", "stage"], kind="mergesort").reset_index(drop=True)
    return {"hops": hops, "structures": structures, "shortlist": shortlist_table(structures, hops, threshold),
            "failures": failures}


# ----------------------------------------------------------------------------- sources
class DeltaSource:
    """A source that yields only the given hosts (what an incremental run screens)."""

    def __init__(self, name: str, items: dict[str, list[HostItem]], db_version: str | None = None):
        self.name = name
        self._items = items
        self._db_version = db_version

    def fetch(self, ion: str) -> list[HostItem]:
        """The hosts of ``ion`` to screen."""
        return list(self._items.get(ion, []))

    def database_version(self) -> str | None:
        """Version of the database the hosts came from."""
        return self._db_version


class SnapshotSource:
    """Incremental view of a source without stamps (bundled, files): diffed by structure hash.

    Args:
        source: the wrapped source.
        previous: ``ion -> {id: structure hash}`` of the previous run.
    """

    incremental = True

    def __init__(self, source: Any, previous: Any):
        self.source = source
        self.name = source.name
        self._previous = previous
        self._items: dict[str, dict[str, HostItem]] = {}
        self._deltas: dict[str, Delta] = {}

    def sync(self, ion: str) -> Delta:
        """Read every host of ``ion``; diff by structure hash."""
        if ion in self._deltas:
            return self._deltas[ion]
        from screener._screen import structure_hash

        items = {h.item: h for h in self.source.fetch(ion)}
        now = {}
        for mid, h in items.items():
            if h.structure is not None:
                now[mid] = structure_hash(h.structure)
            else:  # unreadable: screened (as a failure row) once per distinct error
                now[mid] = "unreadable-" + hashlib.sha256(str(h.error).encode()).hexdigest()[:12]
        delta = diff_members(ion, self._previous(ion), now)
        delta.members = {k: Member(v, v) for k, v in sorted(now.items())}
        delta.db_version = self.source.database_version()
        self._items[ion] = items
        self._deltas[ion] = delta
        c = delta.counts()
        log.info("%s %s: %d new, %d changed, %d unchanged, %d removed", self.name, ion, c["new"], c["changed"],
                 c["unchanged"], c["removed"])
        return delta

    def items(self, ion: str, ids: list[str] | None = None) -> list[HostItem]:
        """Hosts of ``ion`` (all, or ``ids``)."""
        self.sync(ion)
        got = self._items[ion]
        return [got[i] for i in sorted(got if ids is None else ids)]

    def fetch(self, ion: str) -> list[HostItem]:
        """Every host of ``ion``."""
        return self.items(ion)

    def database_version(self) -> str | None:
        """The wrapped source's database version."""
        return self.source.database_version()


# ----------------------------------------------------------------------------- dataset
class ResultsDataset:
    """Screening results partitioned by date and chemistry, plus the ``latest/`` tables."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.latest_dir = self.root / "latest"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``<root>/.lock`` exclusively: two runs never write one dataset at the same time.

        Raises:
            ScreenerError: another run holds it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as fh:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX: no lock
                yield
                return
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise ScreenerError(f"another run is writing to {self.root}; try again when it is done") from None
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _parts(self, table: str, ion: str) -> list[Path]:
        return sorted((self.root / table).glob(f"date=*/chemistry={ion}/part-*.parquet"),
                      key=lambda p: (p.name, str(p)))

    def read(self, table: str, ion: str) -> pd.DataFrame:
        """Every row of ``table`` for chemistry ``ion`` (all dates)."""
        frames = [pd.read_parquet(p) for p in self._parts(table, ion)]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def append(self, date: str, ion: str, run_id: str, tables: dict[str, pd.DataFrame]) -> list[Path]:
        """Write one part per non-empty table under ``date=<date>/chemistry=<ion>/``."""
        written = []
        for name in TABLES:
            df = tables.get(name)
            if df is None or not len(df):
                continue
            path = self.root / name / f"date={date}" / f"chemistry={ion}" / f"part-{run_id}.parquet"
            _write_atomic(_parquet_bytes(df), path)
            written.append(path)
        return written

    def newest_screened(self, ion: str) -> pd.DataFrame:
        """One row per material: its newest screening (``SCREENED_COLUMNS``), indexed by id."""
        df = self.read("screened", ion)
        if not len(df):
            df = pd.DataFrame(columns=SCREENED_COLUMNS)
        df = df.sort_values(["material_id", "run_id"], kind="mergesort").drop_duplicates("material_id", keep="last")
        df.index = pd.Index(df["material_id"].astype(str).to_list())
        return df

    def latest_for(self, ion: str, members: list[str]) -> dict[str, pd.DataFrame]:
        """Hops, structures, failures and materials of the newest screening of each member."""
        newest = self.newest_screened(ion)
        newest = newest[newest["material_id"].isin(set(members))]
        keys = set(zip(newest["material_id"], newest["run_id"]))

        def pick(table: str) -> pd.DataFrame:
            df = self.read(table, ion)
            if not len(df):
                return df
            mask = [(m, r) in keys for m, r in zip(df["material_id"], df["run_id"])]
            return df[mask].drop(columns=["run_id"]).reset_index(drop=True)

        hops, structures, failures = pick("hops"), pick("structures"), pick("failures")
        if len(failures):
            failures = failures.drop(columns=["material_id"])
        materials = newest.reindex(columns=MATERIAL_COLUMNS).sort_values("material_id").reset_index(drop=True)
        return {"hops": hops, "structures": structures, "failures": failures, "materials": materials}

    def previous_members(self, ion: str) -> dict[str, str]:
        """``{id: structure hash}`` in ``latest/chemistry=<ion>/materials.parquet`` (empty at first)."""
        path = self.latest_dir / f"chemistry={ion}" / "materials.parquet"
        if not path.exists():
            return {}
        df = pd.read_parquet(path)
        return dict(zip(df["material_id"], df["structure_hash"]))

    def latest_chemistries(self) -> list[str]:
        """Chemistries that have latest tables."""
        return sorted(p.name.split("=", 1)[1] for p in self.latest_dir.glob("chemistry=*") if p.is_dir())


# ----------------------------------------------------------------------------- engine
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
) -> IncrementResult:
    """Sync ``source``, screen what changed, append it to ``results``; return the newest tables.

    Args:
        chemistry: working ion(s).
        source: an incremental source (:class:`~screener._mp.MPSource`) or any Source (diffed by
            structure hash).
        results: where results accumulate.
        threshold, model_dir, pathways, workers, scheduler, synchronous, batch_size, device, quiet:
            as for :func:`screener._screen.screen`.
        now: the run's time (UTC; default now): names the date partition and the run id.
    """
    from screener import __version__
    from screener._pathways import PathwayConfig
    from screener._screen import model_version_of, screen

    ions = [c.strip() for c in (chemistry.split(",") if isinstance(chemistry, str) else chemistry) if c.strip()]
    if not ions:
        raise ValueError("no working ion given")
    pw = pathways or PathwayConfig()
    chash = config_hash(pw)
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
                     write=True, resume=True)
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

    return final_tables(cat("hops"), cat("structures"), cat("failures"), threshold)


def counts_of(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Row counts of the four tables (as ``run.json`` reports them)."""
    hops = tables["hops"]
    return {"hops": len(hops), "hops_predicted": int(hops["predicted_em_eV"].notna().sum()),
            "structures": len(tables["structures"]), "shortlist": len(tables["shortlist"]),
            "failures": len(tables["failures"])}


# ----------------------------------------------------------------------------- screener run --source mp
def run_incremental(chemistry: str | list[str], source: Any, out: str | Path | None, *,
                    results_dir: str | Path | None = None, **kwargs: Any) -> Any:
    """``screener run`` on an incremental source: screen what changed, write every current material.

    Results accumulate in ``results_dir`` (default ``<cache>/results``); ``out`` gets the usual
    tables and a ``run.json`` whose ``counts`` include new/changed/unchanged/removed.

    Returns:
        A :class:`screener._screen.ScreenResult`.
    """
    from screener._io import default_out_dir, write_run
    from screener._screen import ScreenResult

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


# ----------------------------------------------------------------------------- nightly
def refresh_latest(results: ResultsDataset, inc: IncrementResult, threshold: float) -> list[Path]:
    """Rewrite the ``latest/`` files whose content changed; returns the files written."""
    written = []
    for ion, tables in inc.latest.items():
        folder = results.latest_dir / f"chemistry={ion}"
        final = final_tables(tables["hops"], tables["structures"], tables["failures"], threshold)
        for name in ("hops", "structures", "failures"):
            if write_if_changed(_parquet_bytes(final[name]), folder / f"{name}.parquet"):
                written.append(folder / f"{name}.parquet")
        if write_if_changed(_parquet_bytes(tables["materials"]), folder / "materials.parquet"):
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
            if write_if_changed(_parquet_bytes(df), results.latest_dir / f"{name}.parquet"):
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
            _write_atomic(json.dumps(info, indent=1, default=str, allow_nan=True).encode(), path)
    return inc, written


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m pipelines.nightly``."""
    p = argparse.ArgumentParser(
        prog="python -m pipelines.nightly",
        description="Pull hosts, diff against the cache, screen only what changed, append the results to a "
                    "Parquet dataset partitioned by date and chemistry and refresh <results>/latest/. Exit "
                    "code: 0 done; 3 done but some newly screened inputs failed; 2 configuration error; 1 crash.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--chemistry", required=True, help="working ion(s), comma separated: Mg,Ca,Zn")
    p.add_argument("--source", default="mp", help="'mp' (Materials Project), 'bundled' or a folder/file of structures")
    p.add_argument("--results", default="results", help="folder of the results dataset and latest/ tables")
    p.add_argument("--cache", default=None, help="Materials Project cache folder; when not given: ~/.cache/screener/mp")
    p.add_argument("--offline", action="store_true", help="screen from the Materials Project cache alone")
    p.add_argument("--max-ehull", type=float, default=0.1, help="mp: largest energy above hull (eV/atom)")
    p.add_argument("--max-sites", type=int, default=150, help="mp: largest number of sites per cell")
    p.add_argument("--experimental-only", action="store_true", help="mp: only ICSD materials (theoretical=False)")
    p.add_argument("--insertion-electrodes", action="store_true",
                   help="mp: add the ion-holding materials of the ion's insertion-electrode documents")
    p.add_argument("--threshold", type=float, default=0.65, help="shortlist below this 1D percolation barrier (eV)")
    p.add_argument("--workers", type=int, default=None, help="Dask worker processes (default: the CPU cores)")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    p.add_argument("--sync", action="store_true", help="run in this process without Dask workers")
    p.add_argument("--batch-size", type=int, default=None,
                   help="hops per model task (default: 32 on a GPU, 8 on a CPU)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the model runs")
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--quiet", action="store_true", help="warnings only")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one nightly pass; returns the exit code."""
    from screener._errors import ModelLoadError
    from screener._sources import make_source

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        options = {"max_ehull": args.max_ehull, "max_sites": args.max_sites,
                   "experimental_only": args.experimental_only,
                   "insertion_electrodes": args.insertion_electrodes, "cache": args.cache, "offline": args.offline}
        source = make_source(args.source, **options)
        inc, written = nightly(args.chemistry, source, args.results, threshold=args.threshold,
                               model_dir=args.model, workers=args.workers, scheduler=args.scheduler,
                               synchronous=args.sync, batch_size=args.batch_size, device=args.device,
                               quiet=True)
    except (ModelLoadError, ScreenerError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - a crash is exit 1 with a traceback
        log.exception("crashed")
        return 1
    totals = inc.run_info["incremental"]["totals"]
    log.info("nightly %s: screened %d, reused %d (%d new, %d changed, %d removed); %d file(s) written under %s",
             ",".join(inc.ions), totals["screened"], totals["reused"], totals["new"], totals["changed"],
             totals["removed"], len(written), args.results)
    print(json.dumps({"run_id": inc.run_info["run_id"], **totals, "files_written": len(written)}))
    return 3 if inc.new_failures else 0


if __name__ == "__main__":
    sys.exit(main())
