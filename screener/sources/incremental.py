"""Incremental view of a source without stamps (bundled, files): diffed by structure hash."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from screener.core.hashing import structure_hash
from screener.sources.base import HostItem
from screener.sources.mp.delta import Delta, Member, diff_members

log = logging.getLogger(__name__)


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
