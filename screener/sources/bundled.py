"""The catalogue of well-known intercalation hosts bundled under ``data/hosts/``.

Each host is one CIF written by ``data/hosts/_build_catalogue.py`` from published
crystallographic data, listed in ``data/hosts/catalogue.json`` with its formula, working ions,
structural family, declared space group and literature reference.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from screener._version import __version__
from screener.core.assets import assets_dir
from screener.core.errors import ScreenerError, StructureReadError
from screener.sources.base import HostItem

CATALOGUE_FILE = "catalogue.json"


@dataclass(frozen=True)
class HostRecord:
    """One bundled host.

    Attributes:
        material_id: stable id, ``bundled-<slug>``.
        formula: reduced formula of the ordered model.
        structure: the ordered crystal structure (a fresh copy per call of ``load_catalogue``).
        family: structural family (``spinel``, ``olivine``, ``layered`` ...).
        working_ions: the mobile ions the host is screened for.
        spacegroup: declared Hermann-Mauguin symbol.
        reference: literature source of the crystallographic data.
        insertion_ions: for an empty framework (no working ion on its sites), the ions it is
            screened for with ``sites="voids"``; empty for the other hosts.
    """

    material_id: str
    formula: str
    structure: Structure
    family: str
    working_ions: tuple[str, ...]
    spacegroup: str
    reference: str
    insertion_ions: tuple[str, ...] = ()


def catalogue_dir() -> Path:
    """The folder holding the bundled CIFs and ``catalogue.json``.

    Returns:
        ``data/hosts`` of the repository, or the same folder as package data of an installed
        wheel (see :func:`screener.core.assets.assets_dir`).
    """
    return assets_dir() / "hosts"


def _read_index(folder: Path) -> list[dict[str, Any]]:
    """The parsed ``catalogue.json`` of ``folder``."""
    path = folder / CATALOGUE_FILE
    if not path.is_file():
        raise ScreenerError(
            f"bundled catalogue not found at {path}; run data/hosts/_build_catalogue.py"
        )
    with path.open() as fh:
        records = json.load(fh)
    if not isinstance(records, list):
        raise ScreenerError(f"{path}: expected a list of host records")
    return records


def _read_cif(path: Path) -> Structure:
    """Read one bundled CIF (pymatgen's parser warnings are silenced)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_file(path)
    except (OSError, ValueError, KeyError) as exc:
        raise StructureReadError(f"cannot read bundled host {path.name}: {exc}") from exc


@lru_cache(maxsize=4)
def _load_all(folder: str) -> tuple[HostRecord, ...]:
    """Every host of the catalogue in ``folder``, sorted by id (parsed once per folder)."""
    base = Path(folder)
    hosts = [
        HostRecord(
            material_id=str(rec["id"]),
            formula=str(rec["formula"]),
            structure=_read_cif(base / rec["file"]),
            family=str(rec["family"]),
            working_ions=tuple(rec["working_ions"]),
            spacegroup=str(rec["spacegroup"]),
            reference=str(rec["reference"]),
            insertion_ions=tuple(rec.get("insertion_ions", ())),
        )
        for rec in _read_index(base)
    ]
    return tuple(sorted(hosts, key=lambda h: h.material_id))


def load_catalogue(ion: str | None = None, frameworks: bool = False) -> list[HostRecord]:
    """The bundled hosts for a working ion.

    Args:
        ion: element symbol of the working ion (``"Mg"``, ``"Li"`` ...); ``None`` for all hosts.
        frameworks: also the empty frameworks offered for ``ion`` (screened with its insertion
            at their voids); with ``ion`` None, every framework.

    Returns:
        The hosts that list ``ion`` among their working ions (all hosts if ``ion`` is None), and
        with ``frameworks`` those that list it among their insertion ions; sorted by id. Each
        record carries its own copy of the structure.
    """
    records = _load_all(str(catalogue_dir()))
    return [
        HostRecord(
            material_id=r.material_id,
            formula=r.formula,
            structure=r.structure.copy(),
            family=r.family,
            working_ions=r.working_ions,
            spacegroup=r.spacegroup,
            reference=r.reference,
            insertion_ions=r.insertion_ions,
        )
        for r in records
        if (ion is None and (frameworks or r.working_ions)) or ion in r.working_ions
        or (frameworks and ion in r.insertion_ions)
    ]


class BundledSource:
    """The catalogue bundled under ``data/hosts/`` (the default without an MP key).

    Args:
        sites: ``voids`` also offers the empty frameworks (λ-MnO2, TiS2, MoS2, Mo6S8)
            for their insertion ions; ``occupied`` (default) only hosts that hold the ion.
    """

    name = "bundled"

    def __init__(self, sites: str = "occupied"):
        self.sites = sites

    def fetch(self, ion: str) -> list[HostItem]:
        """Bundled hosts that contain ``ion`` (and, with ``sites="voids"``, its frameworks)."""
        return [
            HostItem(item=r.material_id, structure=r.structure, source=self.name, formula=r.formula,
                     meta={"family": r.family, "reference": r.reference})
            for r in load_catalogue(ion, frameworks=self.sites == "voids")
        ]

    def database_version(self) -> str | None:
        """The screener version that ships the catalogue."""
        return f"bundled-{__version__}"
