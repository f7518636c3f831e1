"""Sources of candidate host structures behind one small interface.

- ``bundled``: the catalogue of well-known intercalation hosts under ``data/hosts/``.
- a path: a folder or file of CIF, POSCAR or pymatgen-JSON structures.
- ``mp``: the Materials Project through ``mp-api`` (needs ``MP_API_KEY``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pymatgen.core import Structure

from screener._errors import ScreenerError, StructureReadError

log = logging.getLogger(__name__)

STRUCTURE_SUFFIXES = {".cif", ".json", ".vasp", ".poscar", ".mcif"}
STRUCTURE_NAMES = {"POSCAR", "CONTCAR"}


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


class BundledSource:
    """The catalogue bundled under ``data/hosts/`` (the default without an MP key)."""

    name = "bundled"

    def fetch(self, ion: str) -> list[HostItem]:
        """Bundled hosts that contain ``ion``."""
        from screener._bundled import load_catalogue

        return [
            HostItem(item=r.material_id, structure=r.structure, source=self.name, formula=r.formula,
                     meta={"family": r.family, "reference": r.reference})
            for r in load_catalogue(ion)
        ]

    def database_version(self) -> str | None:
        """The screener version that ships the catalogue."""
        from screener import __version__

        return f"bundled-{__version__}"


class PathSource:
    """Structure files: one file, or every structure file in a folder (recursively).

    Every file is screened for every chemistry asked for: a file without the working ion becomes
    a failure row, so nothing the user handed over is silently dropped.
    """

    name = "files"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def files(self) -> list[Path]:
        """The structure files, sorted."""
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise ScreenerError(f"no such file or folder: {self.path}")
        return sorted(
            p for p in self.path.rglob("*")
            if p.is_file() and not p.name.startswith(".")
            and (p.suffix.lower() in STRUCTURE_SUFFIXES or p.name.upper().startswith(tuple(STRUCTURE_NAMES)))
        )

    def fetch(self, ion: str) -> list[HostItem]:
        """Read every file; unreadable ones carry their error."""
        from screener._pathways import read_structure

        items = []
        root = self.path if self.path.is_dir() else self.path.parent
        for p in self.files():
            name = str(p.relative_to(root))
            try:
                s = read_structure(p)
                items.append(HostItem(item=name, structure=s, source=self.name,
                                      formula=s.composition.reduced_formula))
            except StructureReadError as exc:
                items.append(HostItem(item=name, structure=None, source=self.name, error=exc))
            except Exception as exc:  # noqa: BLE001 - garbage in any form becomes a failure row
                items.append(HostItem(item=name, structure=None, source=self.name,
                                      error=StructureReadError(f"{p}: {type(exc).__name__}: {exc}")))
        return items

    def database_version(self) -> str | None:
        """Files carry no database version."""
        return None


def make_source(spec: str | None, **options: Any) -> Source:
    """The source named by ``spec``: ``bundled``, ``mp`` or a path; None picks the default.

    The default is ``mp`` when ``MP_API_KEY`` is set, else ``bundled``; a one-line notice says which.

    Args:
        spec: ``bundled``, ``mp``, a path, or None.
        options: settings of the Materials Project source (``max_ehull``, ``max_sites``,
            ``experimental_only``, ``insertion_electrodes``, ``cache``, ``offline``; see
            :class:`screener._mp.MPOptions`); other sources take none and ignore them.
    """
    if spec is None:
        if os.environ.get("MP_API_KEY"):
            log.info("source: Materials Project (MP_API_KEY is set)")
            spec = "mp"
        else:
            log.info("source: bundled catalogue (set MP_API_KEY to screen the Materials Project)")
            spec = "bundled"
    if spec == "mp":
        try:
            from screener._mp import MPSource
        except ModuleNotFoundError as exc:
            raise ScreenerError("the Materials Project source is not available in this version") from exc
        return MPSource.from_env(**options)
    flags = [k for k in ("offline", "insertion_electrodes", "experimental_only", "cache") if options.get(k)]
    if flags:
        log.warning("ignored for the %s source (Materials Project only): %s", spec,
                    ", ".join("--" + k.replace("_", "-") for k in flags))
    if spec == "bundled":
        return BundledSource()
    return PathSource(spec)
