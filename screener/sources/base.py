"""What every source of host structures hands over: :class:`HostItem`, and the :class:`Source` interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pymatgen.core import Structure

from screener.core.errors import ScreenerError


@dataclass
class HostItem:
    """One candidate host as a source hands it over.

    Attributes:
        item: what a failure row names: a material id or a file path.
        structure: the structure, or None when it could not be read.
        source: name of the source.
        formula: reduced formula when known.
        error: why the structure could not be read.
        meta: source-specific fields (e.g. last-updated stamp).
    """

    item: str
    structure: Structure | None
    source: str
    formula: str = ""
    error: ScreenerError | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    """What the screening run needs from a source."""
    name: str

    def fetch(self, ion: str) -> list[HostItem]:
        """Candidate hosts for the working ion ``ion``."""
    def database_version(self) -> str | None:
        """Version of the underlying database, when there is one."""


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
