""":class:`MPSource`: the source behind ``--source mp``.

:meth:`MPSource.sync` lists the ids and stamps of a working ion (a cheap search), diffs them
against the cache, and downloads structures only for new or changed materials; ``offline``
screens the cache alone.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from screener.core.errors import StructureReadError
from screener.core.hashing import structure_hash
from screener.sources.base import HostItem
from screener.sources.mp.cache import MPCache
from screener.sources.mp.client import MPClient, stamp_text
from screener.sources.mp.delta import Delta, diff_members
from screener.sources.mp.settings import (
    MPAuthError,
    MPOptions,
    MPSourceError,
    config_path,
    default_cache_dir,
    endpoint_from_env,
    read_api_key,
)

log = logging.getLogger(__name__)


class MPSource:
    """Materials Project hosts for a working ion, through the local cache.

    :meth:`fetch` (the Source protocol) syncs the cache and returns every current material;
    :meth:`sync` returns the :class:`Delta` and :meth:`items` the hosts of chosen ids, which is how
    incremental runs screen only what changed.
    """

    name = "mp"
    incremental = True

    def __init__(self, api_key: str | None = None, options: MPOptions | None = None,
                 endpoint: str | None = None):
        self.options = options or MPOptions()
        self.endpoint = endpoint or endpoint_from_env()
        self.cache = MPCache(self.options.cache or default_cache_dir(self.endpoint))
        self.client = MPClient(api_key, self.endpoint, self.options)
        self._db_version: str | None = None
        self._deltas: dict[str, Delta] = {}

    def __repr__(self) -> str:
        return f"MPSource({self.endpoint}, cache={self.cache.root}, offline={self.options.offline})"

    @classmethod
    def from_env(cls, **options: Any) -> MPSource:
        """The source with the key from the environment or config file and ``options`` (see :class:`MPOptions`).

        Raises:
            MPAuthError: no key and not offline.
        """
        opts = MPOptions(**{k: v for k, v in options.items() if v is not None})
        key = None if opts.offline else read_api_key()
        if not opts.offline and not key:
            raise MPAuthError(
                "no Materials Project API key: set MP_API_KEY or put mp_api_key = \"...\" in "
                f"{config_path()} (or use --offline to screen the cache)")
        return cls(key, opts)

    def query_key(self, ion: str) -> str:
        """The cache's name for the query of ``ion`` with these criteria."""
        o = self.options
        return (f"{ion}|ehull<={o.max_ehull:g}|sites<={o.max_sites}|experimental={int(o.experimental_only)}"
                f"|electrodes={int(o.insertion_electrodes)}" + ("|frameworks=1" if o.frameworks else ""))

    def database_version(self) -> str | None:
        """``db_version`` of the API's heartbeat (offline: the newest one the cache recorded)."""
        if self._db_version is None:
            self._db_version = self.cache.latest_db_version() if self.options.offline else self.client.heartbeat()
        return self._db_version

    def sync(self, ion: str) -> Delta:
        """List the materials of ``ion``, diff them against the cache, download what is new or changed."""
        if ion in self._deltas:
            return self._deltas[ion]
        query = self.query_key(ion)
        previous = self.cache.members(query)
        prev_db = self.cache.query_db_version(query)
        if self.options.offline:
            delta = self._sync_offline(ion, query, previous, prev_db)
        else:
            delta = self._sync_online(ion, query, previous, prev_db)
        log.info("Materials Project %s", delta.describe())
        self._deltas[ion] = delta
        return delta

    def _sync_offline(self, ion: str, query: str, previous: dict[str, str], prev_db: str | None) -> Delta:
        if not self.cache.exists():
            raise MPSourceError(f"--offline: no Materials Project cache at {self.cache.root}; run once online")
        now = previous
        if not self.cache.has_query(query):
            now = self.cache.local_members(ion, self.options)
            log.warning("--offline: %s was never queried with these criteria; using the %d cached %s "
                        "materials that meet them%s", ion, len(now), ion,
                        " (insertion electrodes need an online run)" if self.options.insertion_electrodes else "")
        delta = diff_members(ion, now, now)
        stamps = self.cache.stamps(now)
        delta.members = {k: stamps[k] for k in now if k in stamps}
        delta.db_version = delta.previous_db_version = prev_db or self.cache.latest_db_version()
        delta.offline = True
        return delta

    def _sync_online(self, ion: str, query: str, previous: dict[str, str], prev_db: str | None) -> Delta:
        db_version = self.database_version()
        now = self.client.list_materials(ion)
        if self.options.insertion_electrodes:
            for mid, stamp in self.client.list_electrode_materials(ion).items():
                now.setdefault(mid, stamp)
        if self.options.frameworks:
            for mid, stamp in self.client.list_frameworks(ion).items():
                now.setdefault(mid, stamp)
        cached = self.cache.stamps(now)
        wanted = [m for m, stamp in now.items() if m not in cached or cached[m].last_updated != stamp]
        got: set[str] = set()
        for chunk in self.client.fetch(wanted):  # each chunk is cached as it arrives
            docs = [d for d in map(_cache_doc, chunk) if d is not None]
            self.cache.put(docs, db_version)
            for d in docs:  # the document may have moved on since the listing: keep what we stored
                now[d["material_id"]] = d["last_updated"]
            got.update(d["material_id"] for d in docs)
        missing = set(wanted) - got
        kept = sorted(m for m in missing if m in cached)  # an older copy stays a member until one arrives
        for mid in missing:
            if mid in cached:
                now[mid] = cached[mid].last_updated
            else:
                now.pop(mid, None)
        if missing:
            log.warning("Materials Project: %d listed materials could not be downloaded: %s%s", len(missing),
                        ", ".join(sorted(missing)[:10]),
                        f"; {len(kept)} of them keep their cached copy until a later sync gets the new one"
                        if kept else "")
        self.cache.set_members(query, ion, self.options.criteria(), db_version, now)
        delta = diff_members(ion, previous, now)
        stamps = self.cache.stamps(now)
        delta.members = {k: stamps[k] for k in sorted(now) if k in stamps}
        delta.downloaded = len(got)
        delta.db_version, delta.previous_db_version = db_version, prev_db
        return delta

    def items(self, ion: str, ids: Iterable[str] | None = None) -> list[HostItem]:
        """Hosts of ``ion`` (all current members, or ``ids``) from the cache, sorted by id."""
        from pymatgen.core import Structure


        delta = self.sync(ion)
        want = sorted(delta.members if ids is None else ids)
        rows = self.cache.load(want)
        out = []
        for mid in want:
            row = rows.get(mid)
            if row is None:
                out.append(HostItem(item=mid, structure=None, source=self.name,
                                    error=StructureReadError(f"{mid}: not in the Materials Project cache")))
                continue
            meta = {k: row[k] for k in ("last_updated", "db_version", "structure_hash")}
            try:
                s = Structure.from_dict(json.loads(zlib.decompress(row["structure"])))
            except Exception as exc:  # noqa: BLE001 - a damaged cache row becomes a failure row
                out.append(HostItem(item=mid, structure=None, source=self.name, formula=row["formula"] or "",
                                    error=StructureReadError(f"{mid}: cached structure unreadable: {exc}"),
                                    meta=meta))
                continue
            out.append(HostItem(item=mid, structure=s, source=self.name, formula=row["formula"] or "", meta=meta))
        return out

    def fetch(self, ion: str) -> list[HostItem]:
        """Every current material of ``ion`` (the cache is synced first)."""
        return self.items(ion)

    def deltas(self) -> dict[str, Delta]:
        """The deltas of the ions synced so far."""
        return dict(self._deltas)

    def describe_options(self) -> dict[str, Any]:
        """The settings for ``run.json`` (no key, no endpoint credentials)."""
        d = asdict(self.options)
        d["cache"] = str(self.cache.root)
        parts = urlsplit(self.endpoint)  # no user:password@, no query string
        d["endpoint"] = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
        return d


def _cache_doc(d: dict[str, Any]) -> dict[str, Any] | None:
    """The cache row of a downloaded summary document; None (with a warning) when its structure is unreadable."""
    from pymatgen.core import Structure

    mid = str(d["material_id"])
    try:
        s = Structure.from_dict(d["structure"])
    except Exception as exc:  # noqa: BLE001 - a bad record is skipped, not a crash
        log.warning("Materials Project: %s has no readable structure (%s); skipped", mid, type(exc).__name__)
        return None
    return {"material_id": mid, "last_updated": stamp_text(d.get("last_updated")),
            "formula": d.get("formula_pretty") or s.composition.reduced_formula,
            "elements": [str(e) for e in d.get("elements") or []], "nsites": d.get("nsites"),
            "energy_above_hull": d.get("energy_above_hull"),
            "theoretical": d.get("theoretical"), "structure": s,
            "structure_hash": structure_hash(s)}
