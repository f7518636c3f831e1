"""NEB images of a hop and the files DFT codes read (VASP folders, ASE trajectories)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from screener.core.errors import ScreenerError
from screener.core.files import safe_filename

if TYPE_CHECKING:
    from ase import Atoms
    from pymatgen.core import Structure

    from screener.core.band import Band

#: ``atoms.info`` key that ``screener refine`` sets on the images it writes (the potential's name),
#: so that ``screener learn`` tells an ML potential's NEB from a DFT one.
POTENTIAL_INFO = "screener_potential"


#: Intermediate NEB images between the two end points (VASP ``IMAGES``).
DEFAULT_N_INTERMEDIATE = 5


#: Smallest interatomic distance (Å) accepted in any exported image.
#: The NEB layouts written: VASP image folders, or one ASE trajectory.
FORMATS = ("vasp", "ase")
DEFAULT_MIN_DISTANCE = 0.5


def hop_folder_name(material_id: str, hop_id: str, working_ion: str | None = None) -> str:
    """``<safe material>__<hop_id>`` (with ``_<ion>`` after the material in multi-ion runs)."""
    ion = f"_{working_ion}" if working_ion else ""
    return f"{safe_filename(material_id, max_len=60)}{ion}__{hop_id}"


def structure_to_atoms(structure: Structure) -> Atoms:
    """A pymatgen structure as periodic ASE atoms, site order kept."""
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.pbc = True
    return atoms


def linear_images(initial: Atoms, final: Atoms, n_intermediate: int) -> list[Atoms]:
    """``n_intermediate + 2`` images linearly interpolated between two end points (minimum image)."""
    from ase.mep.neb import NEB

    if len(initial) != len(final):
        raise ScreenerError(f"end points differ in size: {len(initial)} vs {len(final)} atoms")
    images = [initial.copy()] + [initial.copy() for _ in range(n_intermediate)] + [final.copy()]
    NEB(images, method="improvedtangent").interpolate(mic=True)
    return images


def idpp_refine(images: list[Atoms], steps: int = 100, fmax: float = 0.1) -> list[Atoms]:
    """Images relaxed on the IDPP surface (ASE; end points fixed); a new list is returned."""
    from ase.mep.neb import NEB, idpp_interpolate

    images = [im.copy() for im in images]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idpp_interpolate(NEB(images, method="improvedtangent"), traj=None, log=None, fmax=fmax, mic=True, steps=steps)
    for im in images:
        im.calc = None
    return images


def neb_images(band: Band, n_intermediate: int = DEFAULT_N_INTERMEDIATE, method: str = "idpp",
               idpp_steps: int = 100) -> list[Atoms]:
    """NEB images of a band's hop: its two end points and IDPP (or linear) images between.

    Args:
        band: the hop's band (host plus the ion's images).
        n_intermediate: images between the end points.
        method: ``idpp`` or ``linear``.
        idpp_steps: optimiser steps on the IDPP surface.

    Returns:
        ``n_intermediate + 2`` ASE atoms, the migrating ion first, host atoms after.
    """
    if n_intermediate < 1:
        raise ValueError(f"need at least one intermediate image, got {n_intermediate}")
    if method not in ("idpp", "linear"):
        raise ValueError(f"method must be idpp or linear, got {method!r}")
    images = linear_images(structure_to_atoms(band.endpoint(0)), structure_to_atoms(band.endpoint(-1)),
                           n_intermediate)
    return idpp_refine(images, steps=idpp_steps) if method == "idpp" else images


def closest_contact(images: list[Atoms], cutoff: float = 3.0) -> tuple[float, int, int, int]:
    """The smallest interatomic distance over all images (periodic images included).

    Returns:
        ``(distance_A, image, i, j)``; the distance is ``inf`` when no two atoms are within
        ``cutoff``.
    """
    from ase.neighborlist import neighbor_list

    best = (math.inf, -1, -1, -1)
    for k, atoms in enumerate(images):
        i, j, d = neighbor_list("ijd", atoms, cutoff)
        if len(d):
            m = int(np.argmin(d))
            if d[m] < best[0]:
                best = (float(d[m]), k, int(i[m]), int(j[m]))
    return best


def species_grouped(images: list[Atoms]) -> list[Atoms]:
    """Images with atoms grouped by element (first atom kept first), one order for all images.

    VASP reads one count per element block, so same-element atoms must be contiguous.
    """
    symbols = images[0].get_chemical_symbols()
    first = {}
    for s in symbols:
        first.setdefault(s, len(first))
    order = [0] + sorted(range(1, len(symbols)), key=lambda a: (first[symbols[a]] if symbols[a] != symbols[0]
                                                                 else -1, a))
    return [im[order] for im in images]


def write_vasp_neb(images: list[Atoms], folder: Path, inputs: bool = True) -> None:
    """VASP's NEB layout: ``folder/00/POSCAR`` ... ``folder/NN/POSCAR`` (NN = images - 1).

    Atoms are grouped by element (:func:`species_grouped`) in the same order in every image.
    With ``inputs``, ``folder/INCAR`` and ``folder/KPOINTS`` hold a CI-NEB stub
    (:func:`vasp_neb_incar`, :func:`vasp_kpoints`); POTCAR is left to the user (licence).
    """
    from ase.io import write

    folder.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(images) - 1)))
    grouped = species_grouped(images)
    for k, atoms in enumerate(grouped):
        d = folder / f"{k:0{width}d}"
        d.mkdir(exist_ok=True)
        write(d / "POSCAR", atoms, format="vasp", direct=True, sort=False)
    if inputs:
        (folder / "INCAR").write_text(vasp_neb_incar(len(images) - 2, grouped[0]))
        (folder / "KPOINTS").write_text(vasp_kpoints(grouped[0]))


#: k-point spacing of the KPOINTS stub, as VASP's KSPACING (1/Å, 2π included): points along b_i
#: = max(1, ceil(2π |b_i| / spacing)); 0.4 gives 2 points along a 10 Å axis, 1 along a 16 Å one.
KPOINT_SPACING = 0.4
#: Elements whose +U and magnetic moments a DFT user must set (the stub says so in the INCAR).
_OPEN_SHELL = {"Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Mo", "W", "Nb"}


def vasp_neb_incar(n_intermediate: int, atoms: Atoms) -> str:
    """A minimal INCAR for a VASP CI-NEB of ``n_intermediate`` images (VTST-style climbing image).

    The electronic settings are a starting point (PBE, 520 eV, spin-polarised); ``+U``, magnetic
    order and the functional are the DFT team's choice and are flagged in the file.
    """
    symbols = sorted(set(atoms.get_chemical_symbols()))
    open_shell = [e for e in symbols if e in _OPEN_SHELL]
    lines = [
        "# CI-NEB stub written by screener export: check every setting before you submit.",
        f"# Elements: {' '.join(symbols)}. POTCAR: concatenate in the POSCAR order (not written).",
        *([f"# Open-shell {' '.join(open_shell)}: set LDAU/LDAUU/MAGMOM for your project."] if open_shell else []),
        "SYSTEM = screener CI-NEB",
        "ENCUT = 520",
        "PREC = Accurate",
        "EDIFF = 1E-5",
        "ISMEAR = 0 ; SIGMA = 0.05",
        "ISPIN = 2",
        "LREAL = Auto",
        "LWAVE = .FALSE. ; LCHARG = .FALSE.",
        "ISIF = 2          # fixed cell: the end points share one lattice",
        f"IMAGES = {n_intermediate}",
        "SPRING = -5",
        "LCLIMB = .TRUE.   # climbing image (VTST); without VTST: ICHAIN = 0 and IBRION = 1",
        "ICHAIN = 0",
        "IBRION = 3 ; POTIM = 0    # VTST optimisers (IOPT) need POTIM = 0",
        "IOPT = 3          # VTST FIRE",
        "EDIFFG = -0.05    # eV/Å on every image",
        "NSW = 300",
        "",
    ]
    return "\n".join(lines)


def vasp_kpoints(atoms: Atoms, spacing: float = KPOINT_SPACING) -> str:
    """A Gamma-centred KPOINTS with VASP's KSPACING ``spacing`` (1/Å, 2π included)."""
    import numpy as np

    recip = 2 * np.pi * np.linalg.norm(atoms.cell.reciprocal(), axis=1)
    mesh = [max(1, int(np.ceil(r / spacing - 1e-9))) for r in recip]
    return (f"Gamma-centred mesh, KSPACING {spacing} 1/A (screener export)\n0\nGamma\n"
            f"{mesh[0]} {mesh[1]} {mesh[2]}\n")


def clear_hop_folder(folder: Path) -> None:
    """Remove what an earlier export wrote into a hop folder (image folders, ``neb.traj``, ``hop.json``).

    A re-export with fewer images, or one that refuses the hop, must not leave stale images.
    Nothing else in the folder is touched.
    """
    import shutil

    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.is_dir() and p.name.isdigit():
            shutil.rmtree(p)
        elif p.is_file() and p.name in ("neb.traj", "hop.json"):
            p.unlink()


def write_ase_neb(images: list[Atoms], folder: Path) -> None:
    """All images, end points included, in one ASE trajectory ``folder/neb.traj``."""
    from ase.io import write

    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "neb.traj", images, format="traj")
