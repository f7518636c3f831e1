"""The nightly results dataset: Parquet parts partitioned by date and chemistry, plus ``latest/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from screener.core.errors import ScreenerError
from screener.core.files import parquet_bytes, write_bytes_atomic

TABLES = ("hops", "structures", "failures", "screened")


SCREENED_COLUMNS = ["material_id", "working_ion", "last_updated", "structure_hash", "db_version",
                    "model_version", "model_fingerprint", "config_hash", "run_id"]


MATERIAL_COLUMNS = ["material_id", "working_ion", "last_updated", "structure_hash", "model_version", "run_id"]


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
            write_bytes_atomic(parquet_bytes(df), path)
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
