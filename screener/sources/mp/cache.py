""":class:`MPCache`: SQLite under ``--cache``.

Every material with its ``last_updated`` stamp, the database version it came from, a structure hash
and the structure; and the ids each query (working ion + criteria) returned last time.
"""

from __future__ import annotations

import json
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from screener.sources.mp.client import chunks
from screener.sources.mp.delta import Member
from screener.sources.mp.settings import MPOptions, is_framework


class MPCache:
    """SQLite cache of Materials Project documents and query results (``<dir>/mp.sqlite``).

    Nothing is written when nothing changed: a repeated run leaves the file untouched.
    """

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS materials (
        material_id TEXT PRIMARY KEY, last_updated TEXT NOT NULL, db_version TEXT,
        formula TEXT, elements TEXT, nsites INTEGER, energy_above_hull REAL, theoretical INTEGER,
        structure_hash TEXT NOT NULL, structure BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS queries (
        query TEXT PRIMARY KEY, ion TEXT NOT NULL, criteria TEXT NOT NULL, db_version TEXT);
    CREATE TABLE IF NOT EXISTS members (
        query TEXT NOT NULL, material_id TEXT NOT NULL, last_updated TEXT NOT NULL,
        PRIMARY KEY (query, material_id));
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.path = self.root / "mp.sqlite"

    def exists(self) -> bool:
        """Whether the cache file exists."""
        return self.path.is_file()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        try:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE name='members'").fetchone():
                con.executescript(self.SCHEMA)
            with con:  # one transaction: committed on success, rolled back on error
                yield con
        finally:
            con.close()

    def members(self, query: str) -> dict[str, str]:
        """``{material_id: last_updated}`` the query returned last time (empty if never run)."""
        if not self.exists():
            return {}
        with self._db() as con:
            return dict(con.execute("SELECT material_id, last_updated FROM members WHERE query=?", (query,)))

    def query_db_version(self, query: str) -> str | None:
        """Database version when the query last ran."""
        if not self.exists():
            return None
        with self._db() as con:
            row = con.execute("SELECT db_version FROM queries WHERE query=?", (query,)).fetchone()
        return row[0] if row else None

    def has_query(self, query: str) -> bool:
        """Whether the query ran before."""
        if not self.exists():
            return False
        with self._db() as con:
            return con.execute("SELECT 1 FROM queries WHERE query=?", (query,)).fetchone() is not None

    def stamps(self, ids: Iterable[str] | None = None) -> dict[str, Member]:
        """``{material_id: Member}`` of cached materials (all, or those of ``ids``)."""
        if not self.exists():
            return {}
        with self._db() as con:
            rows = con.execute("SELECT material_id, last_updated, structure_hash FROM materials").fetchall()
        want = set(ids) if ids is not None else None
        return {r[0]: Member(r[1], r[2]) for r in rows if want is None or r[0] in want}

    def put(self, docs: list[dict[str, Any]], db_version: str | None) -> None:
        """Insert or replace materials (each with ``structure`` already a Structure, ``structure_hash`` set)."""
        if not docs:
            return
        from monty.json import MontyEncoder

        rows = [(d["material_id"], d["last_updated"], db_version, d.get("formula", ""),
                 ",".join(d.get("elements") or []), d.get("nsites"), d.get("energy_above_hull"),
                 None if d.get("theoretical") is None else int(bool(d["theoretical"])),
                 d["structure_hash"], zlib.compress(json.dumps(d["structure"].as_dict(), cls=MontyEncoder).encode()))
                for d in docs]
        with self._db() as con:
            con.executemany("INSERT OR REPLACE INTO materials VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    def set_members(self, query: str, ion: str, criteria: dict[str, Any], db_version: str | None,
                    members: dict[str, str]) -> bool:
        """Record what the query returned; returns whether anything was written."""
        old = self.members(query)
        old_db = self.query_db_version(query)
        if self.has_query(query) and old == members and old_db == db_version:
            return False
        with self._db() as con:
            con.execute("INSERT OR REPLACE INTO queries VALUES (?,?,?,?)",
                        (query, ion, json.dumps(criteria, sort_keys=True), db_version))
            con.execute("DELETE FROM members WHERE query=?", (query,))
            con.executemany("INSERT INTO members VALUES (?,?,?)",
                            [(query, k, v) for k, v in sorted(members.items())])
        return True

    def local_members(self, ion: str, options: MPOptions) -> dict[str, str]:
        """``{material_id: last_updated}`` of cached materials that meet the summary criteria."""
        if not self.exists():
            return {}
        with self._db() as con:
            rows = con.execute("SELECT material_id, last_updated, elements, nsites, energy_above_hull, "
                               "theoretical FROM materials").fetchall()
        out = {}
        for mid, stamp, elements, nsites, ehull, theoretical in rows:
            els = set((elements or "").split(","))
            if ion not in els and not (options.frameworks and is_framework(els, ion)):
                continue
            if nsites is not None and nsites > options.max_sites:
                continue
            if ehull is not None and ehull > options.max_ehull:
                continue
            if options.experimental_only and theoretical:
                continue
            out[mid] = stamp
        return out

    def load(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{material_id: {formula, last_updated, db_version, structure_hash, structure (dict)}}``."""
        want = sorted(set(ids))
        out: dict[str, dict[str, Any]] = {}
        if not want or not self.exists():
            return out
        with self._db() as con:
            for chunk in chunks(want, 500):
                marks = ",".join("?" * len(chunk))
                for mid, stamp, dbv, formula, shash, blob in con.execute(
                        f"SELECT material_id, last_updated, db_version, formula, structure_hash, structure "
                        f"FROM materials WHERE material_id IN ({marks})", chunk):
                    out[mid] = {"last_updated": stamp, "db_version": dbv, "formula": formula,
                                "structure_hash": shash, "structure": blob}
        return out

    def latest_db_version(self) -> str | None:
        """The newest database version any query recorded."""
        if not self.exists():
            return None
        with self._db() as con:
            rows = [r[0] for r in con.execute("SELECT db_version FROM queries") if r[0]]
        return max(rows, key=version_key) if rows else None


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a database version such as ``2023.11.1``: numeric parts as numbers (so that
    ``2023.11.1`` follows ``2023.9.30``), any other part after them as text."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-_]", version))
