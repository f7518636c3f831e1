"""Writing run outputs: Parquet tables and ``run.json``, each written atomically."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd


def default_out_dir(ions: list[str]) -> Path:
    """``runs/<chemistry>-<UTC date>``."""
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    return Path("runs") / f"{'-'.join(ions)}-{date}"


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write a table to ``path`` via a temporary file and a rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    table = pa.Table.from_pandas(df, preserve_index=False)
    # Keep pandas' schema metadata only: nothing else (no configuration, no secrets) goes in.
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON via a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str, allow_nan=True))
    os.replace(tmp, path)


def write_run(out: Path, tables: dict[str, pd.DataFrame], run_info: dict[str, Any]) -> None:
    """Write ``<name>.parquet`` for each table and ``run.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        write_parquet_atomic(df, out / f"{name}.parquet")
    write_json_atomic(run_info, out / "run.json")
