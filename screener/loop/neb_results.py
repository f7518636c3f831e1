"""Finished NEB calculations, read and checked as a DFT user would before trusting the barrier.

Two layouts:

* VASP: a folder with image folders ``00`` .. ``NN``; an image is finished when it has a
  ``CONTCAR`` (else ``POSCAR``) and an ``OSZICAR`` (else ``OUTCAR``) whose last ionic step is
  written (pymatgen's readers; the OUTCAR is optional). The end points need their energies too
  (copy the end-point relaxations' OSZICAR or OUTCAR into ``00`` and ``NN``).
* ASE: a folder holding one ``*.traj`` (or the file itself) whose frames are the images, each with
  its energy (what ``screener refine`` writes).

The barrier is ``max(E) - E(first)`` (and the reverse one ``max(E) - E(last)``). Checks:

* errors (the folder cannot teach anything): images that did not finish, end-point cells that
  differ (a lattice vector changes by more than 0.5 %), end points in which no ion moves;
* warnings (the user may judge them harmless, ``accept_warnings``): more than one ion moves by
  more than 0.5 Å, interior images below both end points (an inverted profile), the maximum at an
  end point.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from screener.core.band import Band, displacements, migration_barrier
from screener.core.errors import ScreenerError
from screener.loop.predict import CELL_TOLERANCE, MOVES_A, cell_change

ACCEPTED, REJECTED = "accepted", "rejected"


class NebReadError(ScreenerError):
    """A folder that is not a NEB calculation screener can read."""
    stage = "learn"


@dataclass
class NebRecord:
    """One NEB folder, read and judged.

    Attributes:
        folder: the folder (or trajectory file) as given.
        status: ``accepted`` or ``rejected``.
        em_eV: the barrier, highest minus lowest image energy (the training set's convention,
            :func:`~screener.core.band.migration_barrier`), whenever the energies could be read
            (rejected folders too).
        em_forward_eV: forward barrier, ``max(energies) - energies[0]``.
        em_reverse_eV: reverse barrier, ``max(energies) - energies[-1]``.
        reason: why it was rejected (empty when accepted).
        warnings: checks that failed without making the folder unreadable.
        energies_eV: image energies, first to last.
        working_ion: the migrating element.
        hop_length_A: distance between the end points of the migrating ion.
    """

    folder: str
    status: str
    em_eV: float | None = None
    em_forward_eV: float | None = None
    em_reverse_eV: float | None = None
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    energies_eV: list[float] = field(default_factory=list)
    working_ion: str = ""
    hop_length_A: float | None = None
    initial: Structure | None = field(default=None, repr=False)
    final: Structure | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (without the structures)."""
        d = asdict(self)
        d.pop("initial")
        d.pop("final")
        return d

    @property
    def band(self) -> Band:
        """The hop's band in the dataset's end-point form."""
        return Band.from_endpoints(self.initial, self.final, ion=self.working_ion or None)


def _image_dirs(folder: Path) -> list[Path]:
    dirs = sorted((p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"\d{2,3}", p.name)),
                  key=lambda p: int(p.name))
    if len(dirs) < 3:
        raise NebReadError(f"{folder}: not a VASP NEB folder (needs image folders 00, 01, ..., at least 3)")
    if [int(p.name) for p in dirs] != list(range(len(dirs))):
        raise NebReadError(f"{folder}: image folders are not numbered 00..{len(dirs) - 1:02d} without gaps")
    return dirs


def _vasp_image(d: Path) -> tuple[Structure, float | None, str]:
    """Structure, energy (None when unfinished) and the reason it is unfinished."""
    from pymatgen.io.vasp.outputs import Oszicar, Outcar

    geometry = next((d / n for n in ("CONTCAR", "POSCAR") if (d / n).is_file() and (d / n).stat().st_size), None)
    if geometry is None:
        return None, None, "no CONTCAR or POSCAR"  # type: ignore[return-value]
    structure = Structure.from_file(geometry)
    for name, reader in (("OSZICAR", Oszicar), ("OUTCAR", Outcar)):
        path = d / name
        if not path.is_file():
            continue
        try:
            energy = reader(str(path)).final_energy
        except Exception:  # noqa: BLE001 - a truncated file: try the other one
            continue
        if energy is not None and np.isfinite(energy):
            return structure, float(energy), ""
    return structure, None, "no OSZICAR or OUTCAR with a finished ionic step"


def _read_vasp(folder: Path) -> tuple[list[Structure], list[float | None], list[str]]:
    images, energies, missing = [], [], []
    for d in _image_dirs(folder):
        s, e, why = _vasp_image(d)
        if s is None:
            raise NebReadError(f"{d}: {why}")
        images.append(s)
        energies.append(e)
        if e is None:
            missing.append(f"{d.name} ({why})")
    return images, energies, missing


def _read_ase(path: Path) -> tuple[list[Structure], list[float | None], list[str]]:
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = read(str(path), index=":")
    if len(frames) < 3:
        raise NebReadError(f"{path}: a NEB trajectory needs at least 3 images, found {len(frames)}")
    images, energies, missing = [], [], []
    for k, atoms in enumerate(frames):
        images.append(AseAtomsAdaptor.get_structure(atoms))
        try:
            energies.append(float(atoms.get_potential_energy()))
        except Exception:  # noqa: BLE001 - a frame without energy: unfinished
            energies.append(None)
            missing.append(f"frame {k} (no energy)")
    return images, energies, missing


def read_neb(path: str | Path) -> tuple[list[Structure], list[float | None], list[str]]:
    """Images, energies (None where unfinished) and the unfinished images of a NEB folder or trajectory.

    Raises:
        NebReadError: neither layout, or an image without a structure.
    """
    p = Path(path)
    if not p.exists():
        raise NebReadError(f"{p}: no such folder or file")
    if p.is_file():
        return _read_ase(p)
    trajs = sorted(p.glob("*.traj"))
    if not any(re.fullmatch(r"\d{2,3}", q.name) for q in p.iterdir() if q.is_dir()) and len(trajs) == 1:
        return _read_ase(trajs[0])
    return _read_vasp(p)


def judge_neb(path: str | Path, accept_warnings: bool = False) -> NebRecord:
    """Read one NEB calculation and check it (see the module docstring).

    Raises:
        NebReadError: the folder cannot be read at all.
    """
    images, energies, missing = read_neb(path)
    rec = NebRecord(folder=str(path), status=REJECTED)
    errors: list[str] = []
    if missing:
        errors.append(f"images that did not finish: {', '.join(missing)}")
    initial, final = images[0], images[-1]
    rec.initial, rec.final = initial, final
    change = cell_change(initial, final)
    if change > CELL_TOLERANCE:
        errors.append(f"the end-point cells differ (a lattice vector changes by {change:.2%} > {CELL_TOLERANCE:.1%})")
    try:
        _, moved = displacements(initial, final)
        k = int(np.argmax(moved))
        rec.working_ion = initial[k].species_string
        rec.hop_length_A = round(float(moved[k]), 4)
        if moved[k] < 0.1:
            errors.append("no ion moves between the end points")
        if int((moved > MOVES_A).sum()) > 1:
            rec.warnings.append(f"{int((moved > MOVES_A).sum())} sites move by more than {MOVES_A} Å between the "
                                "end points")
    except ScreenerError as exc:
        errors.append(f"the end points are not one hop: {exc}")
    if not missing:
        e = np.asarray(energies, dtype=float)
        rec.energies_eV = [round(float(x), 6) for x in e]
        top = int(np.argmax(e))
        rec.em_eV = round(migration_barrier(e), 6)
        rec.em_forward_eV, rec.em_reverse_eV = round(float(e.max() - e[0]), 6), round(float(e.max() - e[-1]), 6)
        if len(e) > 2 and (e[1:-1] < min(e[0], e[-1]) - 1e-3).any():
            rec.warnings.append("interior images lie below both end points (an inverted profile): the end points "
                                "are not minima")
        if top in (0, len(e) - 1):
            rec.warnings.append("the energy maximum sits at an end point")
    if errors:
        rec.reason = "; ".join(errors)
    elif rec.warnings and not accept_warnings:
        rec.reason = "warnings: " + "; ".join(rec.warnings)
    else:
        rec.status = ACCEPTED
    return rec
