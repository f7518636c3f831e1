"""Finished NEB calculations, read and checked as a DFT user would before trusting the barrier.

Two layouts:

* VASP: a folder with image folders ``00`` .. ``NN``; an image is finished when it has a
  ``CONTCAR`` (else ``POSCAR``) and an ``OSZICAR`` (else ``OUTCAR``) whose last ionic step is
  written (pymatgen's readers). The end points need their energies too (copy the end-point
  relaxations' OSZICAR or OUTCAR into ``00`` and ``NN``). The NEB converged when the OUTCAR of
  every intermediate image says ``reached required accuracy``.
* ASE: a folder holding one ``*.traj`` (or the file itself) whose frames are the images, each with
  its energy, from a DFT calculator (an ASE NEB run with VASP, GPAW...). The NEB converged when
  the force on every intermediate image, less its component along the path, is at most
  :data:`ASE_FMAX`. An optimiser's trajectory (every image at every step) is read from its last
  band. Trajectories that ``screener refine`` wrote (an ML potential's NEB) are refused: learn
  takes DFT barriers.

The barrier is ``max(E) - min(E)`` (forward ``max(E) - E(first)``, reverse ``max(E) - E(last)``).
Checks:

* errors (the folder cannot teach anything): images that did not finish, a NEB that did not
  converge, end-point cells that differ (a lattice vector changes by more than 0.5 %), end points
  in which no ion moves;
* warnings (the user may judge them harmless, ``accept_warnings``): convergence that cannot be
  checked (no OUTCAR in the intermediate images, frames without forces), more than one ion moves
  by more than 0.5 Å, interior images below both end points (an inverted profile), the maximum
  at an end point.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from screener.core.band import Band, displacements, migration_barrier
from screener.core.errors import ScreenerError
from screener.handoff.neb_io import POTENTIAL_INFO
from screener.loop.predict import CELL_TOLERANCE, MOVES_A, cell_change

log = logging.getLogger(__name__)

ACCEPTED, REJECTED = "accepted", "rejected"

#: Largest force (eV/Å) perpendicular to the path on an intermediate image of a converged ASE NEB:
#: twice the usual NEB tolerance of 0.05 eV/Å, since the tangent here (central differences) is not
#: the optimiser's own.
ASE_FMAX = 0.1

#: What VASP writes in an image's OUTCAR when the NEB met EDIFFG.
VASP_CONVERGED = "reached required accuracy"


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
    try:
        structure = Structure.from_file(geometry)
    except Exception as exc:  # noqa: BLE001 - a file cut short (VASP killed while writing it)...
        raise NebReadError(f"{geometry}: cannot read a structure ({type(exc).__name__}: {exc})") from exc
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


@dataclass
class NebRead:
    """A NEB calculation as read: images, energies (None where unfinished) and what the reader found.

    Attributes:
        images: the images, first end point to last.
        energies: their energies (eV); None for an image that did not finish.
        missing: the images that did not finish, with why.
        unconverged: why the NEB did not converge (empty: converged or not checkable).
        notes: warnings of the reader (convergence that cannot be checked...).
    """

    images: list[Structure]
    energies: list[float | None]
    missing: list[str] = field(default_factory=list)
    unconverged: str = ""
    notes: list[str] = field(default_factory=list)


def _read_vasp(folder: Path) -> NebRead:
    out = NebRead([], [])
    dirs = _image_dirs(folder)
    for d in dirs:
        s, e, why = _vasp_image(d)
        if s is None:
            raise NebReadError(f"{d}: {why}")
        out.images.append(s)
        out.energies.append(e)
        if e is None:
            out.missing.append(f"{d.name} ({why})")
    interior = dirs[1:-1]
    outcars = [d / "OUTCAR" for d in interior if (d / "OUTCAR").is_file()]
    if len(outcars) < len(interior):
        out.notes.append("convergence not checked: no OUTCAR in "
                         + ", ".join(d.name for d in interior if not (d / "OUTCAR").is_file()))
    stopped = [o.parent.name for o in outcars if VASP_CONVERGED not in o.read_text(errors="replace")]
    if stopped:
        out.unconverged = f"the NEB did not converge (no '{VASP_CONVERGED}' in the OUTCAR of {', '.join(stopped)})"
    return out


def _last_band(frames: list) -> tuple[list, int]:
    """The last band of an optimiser's trajectory (every image at every step), and how many bands it holds.

    A band's first frame is its first end point, which does not move: the frames repeat with the
    period at which it comes back.
    """
    first = frames[0]
    for period in range(3, len(frames) // 2 + 1):
        if len(frames) % period:
            continue
        again = frames[period]
        if (len(again) == len(first) and np.allclose(again.positions, first.positions, atol=1e-6)
                and np.allclose(again.cell[:], first.cell[:], atol=1e-6)):
            return frames[-period:], len(frames) // period
    return frames, 1


def _perpendicular_fmax(frames: list) -> float | None:
    """Largest force on an intermediate image less its component along the path (None: no forces)."""
    worst = 0.0
    for k in range(1, len(frames) - 1):
        calc = frames[k].calc
        if calc is None or "forces" not in getattr(calc, "results", {}):
            return None
        f = np.asarray(calc.results["forces"], dtype=float)
        tangent = frames[k + 1].positions - frames[k - 1].positions
        norm = np.linalg.norm(tangent)
        if norm > 0:
            tangent = tangent / norm
            f = f - np.sum(f * tangent) * tangent
        worst = max(worst, float(np.linalg.norm(f, axis=1).max()))
    return worst


def _read_ase(path: Path) -> NebRead:
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        frames = read(str(path), index=":")
    except Exception as exc:  # noqa: BLE001 - not a trajectory, or cut short
        raise NebReadError(f"{path}: cannot read the trajectory ({type(exc).__name__}: {exc})") from exc
    if len(frames) < 3:
        raise NebReadError(f"{path}: a NEB trajectory needs at least 3 images, found {len(frames)}")
    potential = next((a.info.get(POTENTIAL_INFO) for a in frames if a.info.get(POTENTIAL_INFO)), None)
    if potential:
        raise NebReadError(f"{path}: an ML-potential NEB ({potential}, written by screener refine); learn takes "
                           "DFT barriers")
    frames, bands = _last_band(frames)
    out = NebRead([], [])
    if bands > 1:
        log.info("%s: an optimiser trajectory of %d bands of %d images: the last band is read", path, bands,
                 len(frames))
    for k, atoms in enumerate(frames):
        try:
            out.images.append(AseAtomsAdaptor.get_structure(atoms))
        except Exception as exc:  # noqa: BLE001
            raise NebReadError(f"{path}: frame {k} is not a structure ({exc})") from exc
        try:
            energy = float(atoms.get_potential_energy())
        except Exception:  # noqa: BLE001 - a frame without energy: unfinished
            energy = None
        if energy is None or not np.isfinite(energy):
            out.energies.append(None)
            out.missing.append(f"frame {k} (no energy)")
        else:
            out.energies.append(energy)
    fmax = _perpendicular_fmax(frames)
    if fmax is None:
        out.notes.append("convergence not checked: the intermediate images carry no forces")
    elif fmax > ASE_FMAX:
        out.unconverged = (f"the NEB did not converge (force perpendicular to the path up to {fmax:.2f} eV/Å "
                           f"> {ASE_FMAX} eV/Å)")
    return out


def read_neb(path: str | Path) -> NebRead:
    """A NEB folder or trajectory, read (see :class:`NebRead`).

    Raises:
        NebReadError: neither layout, an image without a readable structure, an ML-potential
            trajectory.
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
    neb = read_neb(path)
    images, energies, missing = neb.images, neb.energies, neb.missing
    rec = NebRecord(folder=str(path), status=REJECTED)
    errors: list[str] = []
    if missing:
        errors.append(f"images that did not finish: {', '.join(missing)}")
    if neb.unconverged:
        errors.append(neb.unconverged)
    rec.warnings.extend(neb.notes)
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
