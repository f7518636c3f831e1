"""Structure files as a source: one CIF, POSCAR or pymatgen-JSON file, or a folder of them."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

from pymatgen.core import Structure

from screener.core.errors import (
    ScreenerError,
    StructureReadError,
)
from screener.sources.base import HostItem

log = logging.getLogger(__name__)


STRUCTURE_SUFFIXES = {".cif", ".json", ".vasp", ".poscar", ".mcif"}


STRUCTURE_NAMES = {"POSCAR", "CONTCAR"}


def read_structure(path: str | Path, warnings_out: list[str] | None = None) -> Structure:
    """Read a structure file (CIF, POSCAR, pymatgen JSON...) with pymatgen.

    Args:
        path: the file.
        warnings_out: pymatgen's warnings about the file are appended here instead of logged
            (a source reading many files reports each kind once).

    Raises:
        StructureReadError: when the file is missing or cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise StructureReadError(f"{path}: no such file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structure = Structure.from_file(path)
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many kinds on bad files
            raise StructureReadError(
                f"{path}: cannot read a structure: {_unreadable_reason(path)} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
    for msg in dict.fromkeys(str(w.message).strip() for w in caught):
        if warnings_out is None:
            log.warning("%s: %s", path, msg)
        else:
            warnings_out.append(msg)
    if not isinstance(structure, Structure) or len(structure) == 0:
        raise StructureReadError(f"{path}: no sites read")
    n = _cif_structures(path)
    if n > 1:  # pymatgen read the first; the others would be dropped without a word
        raise StructureReadError(f"{path}: the CIF holds {n} structures (data blocks); screener reads one structure "
                                 "per file: split it (e.g. one file per data_ block)")
    return structure


def _cif_structures(path: Path) -> int:
    """How many structures a CIF holds (1 for other files, or a CIF with one data block)."""
    if path.suffix.lower() not in (".cif", ".mcif"):
        return 1
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return 1
    if len(re.findall(r"^\s*data_", text, flags=re.MULTILINE)) < 2:
        return 1
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return len(CifParser(path).parse_structures(primitive=False))
        except Exception:  # noqa: BLE001 - the first block was read; blocks without a structure do not count
            return 1


def _unreadable_reason(path: Path) -> str:
    """A plain-language guess at why pymatgen could not read ``path`` (for failure rows)."""
    try:
        head = path.read_bytes()[:4096]
    except OSError as exc:
        return f"the file cannot be opened ({exc.strerror})"
    if not head.strip():
        return "the file is empty"
    if b"\x00" in head or sum(b < 9 or 13 < b < 32 for b in head) > len(head) // 20:
        return "the file is binary, not a text structure file (CIF, POSCAR or JSON)"
    text = head.decode("utf-8", "replace").lower()
    if path.suffix.lower() in (".cif", ".mcif") or "data_" in text:
        if "_cell_length_a" not in text and "_atom_site" not in text:
            return "no crystal structure in it: no unit cell and no atom-site table (is it a CIF?)"
        return "the CIF is incomplete or malformed (truncated file, or a broken atom-site table?)"
    return "the file is not in a structure format pymatgen recognises, or it is incomplete"


class PathSource:
    """Structure files: one file, or every structure file in a folder (recursively).

    Every file is screened for every chemistry asked for: a file without the working ion becomes
    a failure row, so nothing the user handed over is silently dropped.
    """

    name = "files"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        #: pymatgen's warnings while reading, each with the files it concerned.
        self.reader_warnings: dict[str, list[str]] = {}

    def files(self) -> list[Path]:
        """The structure files, sorted.

        Raises:
            ScreenerError: the path does not exist, or a folder holds no structure file.
        """
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise ScreenerError(f"no such file or folder: {self.path}")
        found = sorted(
            p for p in self.path.rglob("*")
            if p.is_file() and not p.name.startswith(".")
            and (p.suffix.lower() in STRUCTURE_SUFFIXES or p.name.upper().startswith(tuple(STRUCTURE_NAMES)))
        )
        if not found:
            kinds = ", ".join(f"*{x}" for x in sorted(STRUCTURE_SUFFIXES)) + ", POSCAR*, CONTCAR*"
            raise ScreenerError(f"no structure files found in {self.path} (looked for {kinds}, in subfolders too)")
        return found

    def fetch(self, ion: str) -> list[HostItem]:
        """Read every file; unreadable ones carry their error."""
        items = []
        root = self.path if self.path.is_dir() else self.path.parent
        new: dict[str, list[str]] = {}
        for p in self.files():
            name = str(p.relative_to(root))
            said: list[str] = []
            try:
                s = read_structure(p, said)
                items.append(HostItem(item=name, structure=s, source=self.name,
                                      formula=s.composition.reduced_formula))
            except StructureReadError as exc:
                items.append(HostItem(item=name, structure=None, source=self.name, error=exc))
            except Exception as exc:  # noqa: BLE001 - garbage in any form becomes a failure row
                items.append(HostItem(item=name, structure=None, source=self.name,
                                      error=StructureReadError(f"{p}: {type(exc).__name__}: {exc}")))
            for msg in said:
                files = self.reader_warnings.setdefault(msg, [])
                if name not in files:  # a second working ion reads the same files again
                    files.append(name)
                    new.setdefault(msg, []).append(name)
        for msg, files in new.items():
            log.warning("reading %d file(s), e.g. %s: %s", len(files), files[0], msg)
        return items

    def database_version(self) -> str | None:
        """Files carry no database version."""
        return None
