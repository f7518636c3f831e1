"""Writing run outputs: Parquet tables, ``run.json`` and the resumable part store.

Every file is written atomically (a temporary file in the same folder, flushed, then renamed), so a
run killed at any moment leaves either the old file or the new one, never half a file.

The part store (``<out>/_parts/``) makes a run resumable:

* ``hosts/<safe id>-<key>.json``: the hop records of one host (one working ion), the cleaned
  cell the bands are rebuilt from, its periodic hop network and its failure rows;
* ``batches/<key>.json``: the predicted barriers (and per-hop failures) of one model batch (parts
  format 1 wrote ``batches/<key>.parquet``; those are still read);
* ``manifest.jsonl``: an append-only journal, one JSON object per line: a ``run`` line per start
  and one ``host`` or ``batch`` line per part, written *after* the part file is in place, with the
  part's sha256. A part counts as done only when its line is complete and the file's checksum
  matches; a line torn by ``kill -9`` is ignored.

Every line is flushed at once, so a killed process loses nothing; the manifest is fsynced about
once a second and at close, and part files are not fsynced at all (their checksum in the manifest
guards them): a machine that dies loses at most the last second's parts, which are recomputed.

Keys are content hashes (see :mod:`screener.screening.run`), so a rerun of the same command finds the
work already done and a rerun with other inputs, settings or model computes only what is new.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from screener.core.errors import ScreenerError
from screener.core.files import (
    json_bytes,
    safe_filename,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)

log = logging.getLogger(__name__)


PARTS_DIR = "_parts"


MANIFEST = "manifest.jsonl"


#: 2: batch parts are JSON (a Parquet file cost the client ~5 ms a batch; format 1's Parquet
#: batch parts are still read).
PARTS_FORMAT = 2


#: Seconds between fsyncs of the manifest (every line is flushed at once).
SYNC_INTERVAL_S = 1.0


def default_out_dir(ions: list[str]) -> Path:
    """``runs/<chemistry>-<UTC date>``."""
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    return Path("runs") / f"{'-'.join(ions)}-{date}"


def write_run(out: Path, tables: dict[str, pd.DataFrame], run_info: dict[str, Any]) -> None:
    """Write ``<name>.parquet`` for each table and ``run.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        write_parquet_atomic(df, out / f"{name}.parquet")
    write_json_atomic(run_info, out / "run.json")


@dataclass
class PartRecord:
    """One manifest line: a part file that is complete."""
    kind: str
    key: str
    file: str
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)


class PartStore:
    """The resumable parts of a run in ``<out>/_parts`` (see the module docstring).

    Only the process that runs the pipeline (the Dask client) writes here; Dask workers return
    their results to it. Opening takes an exclusive lock so that two runs never write into one
    folder at the same time.

    Args:
        out: the run's output folder.
        header: fields of the ``run`` line appended at open (versions, settings hash).
        fresh: forget every stored part (``--no-resume``), once the lock is held.

    Raises:
        ScreenerError: another run holds the folder's lock.
    """

    def __init__(self, out: Path, header: dict[str, Any] | None = None, fresh: bool = False):
        self.out = Path(out)
        self.root = self.out / PARTS_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fh = self._lock()
        if fresh:  # under the lock: never the parts of a run still writing them
            for p in self.root.iterdir():
                if p.name == ".lock":
                    continue
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        (self.root / "hosts").mkdir(exist_ok=True)
        (self.root / "batches").mkdir(exist_ok=True)
        self._clean_temporaries()
        self.records: dict[tuple[str, str], PartRecord] = self._read_manifest()
        self._verified: set[tuple[str, str]] = set()
        self._manifest = open(self.root / MANIFEST, "ab")  # noqa: SIM115 - kept open for appends
        self._synced = -math.inf
        self._append({"type": "run", "format": PARTS_FORMAT, **(header or {}),
                      "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})

    # ------------------------------------------------------------------ housekeeping
    def _lock(self) -> Any:
        fh = open(self.root / ".lock", "a+b")  # noqa: SIM115 - held for the store's lifetime
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return fh
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            raise ScreenerError(
                f"another screener run is writing to {self.out}; wait for it to finish or choose "
                "another --out"
            ) from exc
        return fh

    def _clean_temporaries(self) -> None:
        """Remove temporary files left by a killed run (nobody else writes here: we hold the lock)."""
        for folder in (self.out, self.root, self.root / "hosts", self.root / "batches"):
            for p in folder.glob(".*.tmp-*"):
                with contextlib.suppress(OSError):
                    p.unlink()

    def _read_manifest(self) -> dict[tuple[str, str], PartRecord]:
        path = self.root / MANIFEST
        records: dict[tuple[str, str], PartRecord] = {}
        if not path.exists():
            return records
        torn = 0
        for line in path.read_bytes().splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                torn += 1  # the tail of a run killed mid-write
                continue
            if not isinstance(d, dict) or d.get("type") not in ("host", "batch"):
                continue
            rec = PartRecord(d["type"], d["key"], d["file"], d["sha256"], d.get("meta", {}))
            records[(rec.kind, rec.key)] = rec
        if torn:
            log.info("manifest: ignored %d incomplete line(s) of an interrupted run", torn)
        return records

    def _append(self, obj: dict[str, Any]) -> None:
        """Journal one line: flushed at once (a killed process loses nothing), fsynced in groups.

        An fsync per line cost ~2 ms of the client's time per task; the journal is synced at most
        every :data:`SYNC_INTERVAL_S` and at :meth:`close`. A machine that dies in between loses at
        most that interval's lines, and their parts are recomputed by the next run.
        """
        self._manifest.write(json.dumps(obj, allow_nan=True).encode() + b"\n")
        self._manifest.flush()
        now = time.monotonic()
        if now - self._synced >= SYNC_INTERVAL_S:
            os.fsync(self._manifest.fileno())
            self._synced = now

    def close(self) -> None:
        """Sync and close the manifest and release the lock."""
        with contextlib.suppress(Exception):
            self._manifest.flush()
            os.fsync(self._manifest.fileno())
        with contextlib.suppress(Exception):
            self._manifest.close()
        with contextlib.suppress(Exception):
            self._lock_fh.close()

    def __enter__(self) -> PartStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ parts
    def _read_part(self, kind: str, key: str) -> bytes | None:
        rec = self.records.get((kind, key))
        if rec is None:
            return None
        try:
            data = (self.root / rec.file).read_bytes()
        except OSError:
            log.warning("part %s is in the manifest but missing: recomputing it", rec.file)
            del self.records[(kind, key)]
            self._verified.discard((kind, key))
            return None
        if hashlib.sha256(data).hexdigest() != rec.sha256:
            log.warning("part %s does not match its checksum: recomputing it", rec.file)
            del self.records[(kind, key)]
            self._verified.discard((kind, key))
            return None
        return data

    def _write_part(self, kind: str, key: str, rel: str, data: bytes, meta: dict[str, Any]) -> None:
        # No fsync of the part itself: its checksum goes into the fsynced manifest, and a part
        # lost with the machine fails that checksum and is recomputed.
        write_bytes_atomic(data, self.root / rel, durable=False)
        digest = hashlib.sha256(data).hexdigest()
        self._append({"type": kind, "key": key, "file": rel, "sha256": digest, "meta": meta})
        self.records[(kind, key)] = PartRecord(kind, key, rel, digest, meta)
        self._verified.add((kind, key))

    def has(self, kind: str, key: str) -> bool:
        """Whether a part is done: listed in the manifest, its file present and intact."""
        if (kind, key) in self._verified:
            return True
        if self._read_part(kind, key) is None:
            return False
        self._verified.add((kind, key))
        return True

    def host(self, key: str) -> dict[str, Any] | None:
        """The stored result of a host task, or None when it is not done (or damaged)."""
        data = self._read_part("host", key)
        return None if data is None else json.loads(data)

    def put_host(self, key: str, item: str, result: dict[str, Any]) -> bytes:
        """Store a host result (JSON) and record it; returns the bytes written."""
        data = json_bytes(result, indent=None)
        rel = f"hosts/{safe_filename(item, 60)}-{key[:16]}.json"
        self._write_part("host", key, rel, data, {"item": item})
        return data

    def batch(self, key: str) -> list[dict[str, Any]] | None:
        """The stored rows of a batch, or None when it is not done (or damaged)."""
        data = self._read_part("batch", key)
        if data is None:
            return None
        if self.records[("batch", key)].file.endswith(".parquet"):  # written by parts format 1
            import io

            df = pd.read_parquet(io.BytesIO(data))
            return [{k: (None if isinstance(v, float) and math.isnan(v) and k not in _FLOAT_COLUMNS else v)
                     for k, v in row.items()} for row in df.to_dict("records")]
        return json.loads(data)["rows"]

    def put_batch(self, key: str, rows: list[dict[str, Any]]) -> bytes:
        """Store a batch's rows (JSON) and record them; returns the bytes written."""
        data = json_bytes({"rows": rows}, indent=None)
        self._write_part("batch", key, f"batches/{key}.json", data, {"n": len(rows)})
        return data


#: Keys of a batch row that are floats (NaN where a hop failed); the others are text or None.
_FLOAT_COLUMNS = frozenset({"predicted_em_eV", "uncertainty_eV"})
