"""What changed in a source since the last run: new, changed, unchanged and removed materials."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Member:
    """A material of a query: its stamp and the hash of its structure."""
    last_updated: str
    structure_hash: str


@dataclass
class Delta:
    """What changed for one working ion since the cache last saw its query.

    Attributes:
        ion: working ion.
        new, changed, unchanged, removed: material ids (``changed``: a new ``last_updated``).
        downloaded: structures downloaded.
        db_version: database version now; previous_db_version: when the query last ran.
        members: the query's materials now.
        offline: computed from the cache alone.
    """

    ion: str
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    downloaded: int = 0
    db_version: str | None = None
    previous_db_version: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    offline: bool = False

    def counts(self) -> dict[str, int]:
        """``new``, ``changed``, ``unchanged``, ``removed`` and ``downloaded`` counts."""
        return {"new": len(self.new), "changed": len(self.changed), "unchanged": len(self.unchanged),
                "removed": len(self.removed), "downloaded": self.downloaded}

    def describe(self) -> str:
        """One line: the counts and the database version."""
        c = self.counts()
        db = self.db_version or "unknown"
        if self.previous_db_version and self.previous_db_version != self.db_version:
            db = f"{self.previous_db_version} -> {db}"
        where = "cache only (offline)" if self.offline else f"{c['downloaded']} structures downloaded"
        return (f"{self.ion}: {c['new']} new, {c['changed']} changed, {c['unchanged']} unchanged, "
                f"{c['removed']} removed; {where}; database {db}")


def diff_members(ion: str, previous: dict[str, str], now: dict[str, str]) -> Delta:
    """Classify ids by comparing ``{id: last_updated}`` of the previous query with today's."""
    d = Delta(ion=ion)
    for mid in sorted(now):
        if mid not in previous:
            d.new.append(mid)
        elif previous[mid] != now[mid]:
            d.changed.append(mid)
        else:
            d.unchanged.append(mid)
    d.removed = sorted(set(previous) - set(now))
    return d
