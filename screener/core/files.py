"""Files written atomically, and file names made safe.

Every file is written through a flushed temporary file in the same folder and a rename, so a run
killed at any moment leaves either the old file or the new one, never half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def safe_filename(name: str, max_len: int = 80) -> str:
    """A file name made from an id (material id, file path...) that cannot leave its folder.

    Characters other than letters, digits and ``. _ + -`` become ``_``; leading dots and
    dashes are dropped (no ``..``, no hidden files, no option-like names); the result is at most
    ``max_len`` characters. When anything had to change, 8 hex digits of the id's sha256 are
    appended so that two different ids never share a file name (``a/b`` vs ``a_b``).

    Args:
        name: the id.
        max_len: longest name returned (at least 16).

    Returns:
        A non-empty name of ``[A-Za-z0-9._+-]`` characters, never ``.`` or ``..``.
    """
    text = str(name)
    clean = _UNSAFE.sub("_", text)
    clean = re.sub(r"\.{2,}", "_", clean).lstrip(".-_")
    if clean.split(".")[0].lower() in _RESERVED:
        clean = "_" + clean
    max_len = max(int(max_len), 16)
    if clean != text or not clean or len(clean) > max_len:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        clean = f"{clean[: max_len - 9]}-{digest}" if clean else digest
    return clean


def _fsync_write(path: Path, data: bytes, durable: bool = True) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_bytes_atomic(data: bytes, path: Path, durable: bool = True) -> None:
    """Write bytes to ``path`` via a flushed temporary file and a rename.

    Args:
        data: the file's content.
        path: where it goes.
        durable: also ``fsync`` the file before the rename, so that it survives a crash of the
            machine. Files whose checksum is recorded in a journal that is itself fsynced (the
            parts of :class:`~screener.screening.store.PartStore`) can skip it: a part lost with
            the machine fails its checksum and is recomputed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        _fsync_write(tmp, data, durable)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """A table as Parquet bytes; only pandas' schema metadata goes in (no settings, no secrets)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write a table to ``path`` via a temporary file and a rename."""
    write_bytes_atomic(parquet_bytes(df), path)


def json_bytes(obj: Any, indent: int | None = 1) -> bytes:
    """JSON text of ``obj`` (NaN and infinities allowed, as Python's json writes them)."""
    return json.dumps(obj, indent=indent, default=str, allow_nan=True).encode()


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON via a temporary file and a rename."""
    write_bytes_atomic(json_bytes(obj), path)


def write_if_changed(data: bytes, path: Path) -> bool:
    """Write ``data`` to ``path`` unless the file already holds exactly these bytes."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    write_bytes_atomic(data, path)
    return True
