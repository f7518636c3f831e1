"""The migration band: a host structure plus the migrating ion at linearly interpolated images.

This is exactly the representation of the training data (Devi et al., Sci. Data 2025): one
periodic structure whose first ``n_images`` sites are the migrating ion at its images (image 0 =
initial site, image ``n_images - 1`` = final site) followed by every host site of the initial
structure without the migrating ion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from screener.core.errors import BandBuildError

N_IMAGES = 5


def _min_image(dfrac: np.ndarray) -> np.ndarray:
    """Wrap fractional displacements into [-0.5, 0.5)."""
    return dfrac - np.round(dfrac)


def structure_from_jarvis_dict(d: dict[str, Any]) -> Structure:
    """Read a jarvis-tools ``Atoms.to_dict()`` mapping as a pymatgen Structure.

    Args:
        d: mapping with ``lattice_mat``, ``coords``, ``elements`` and ``cartesian``.

    Returns:
        The structure, sites in the same order.

    Raises:
        BandBuildError: when a key is missing or the arrays do not fit together.
    """
    try:
        lattice = np.asarray(d["lattice_mat"], dtype=float).reshape(3, 3)
        coords = np.asarray(d["coords"], dtype=float).reshape(-1, 3)
        elements = list(d["elements"])
        cartesian = bool(d.get("cartesian", False))
    except (KeyError, TypeError, ValueError) as exc:
        raise BandBuildError(f"not a jarvis Atoms dict: {exc!r}") from exc
    if len(elements) != len(coords):
        raise BandBuildError(f"{len(elements)} elements but {len(coords)} coordinates")
    if not np.all(np.isfinite(coords)) or not np.all(np.isfinite(lattice)):
        raise BandBuildError("non-finite coordinates or lattice")
    if abs(np.linalg.det(lattice)) < 1e-6:
        raise BandBuildError("singular lattice")
    try:
        return Structure(Lattice(lattice), elements, coords, coords_are_cartesian=cartesian)
    except (ValueError, KeyError) as exc:
        raise BandBuildError(f"cannot build structure: {exc}") from exc


def structure_to_jarvis_dict(structure: Structure) -> dict[str, Any]:
    """Write a structure in jarvis-tools ``Atoms.to_dict()`` form (fractional coordinates)."""
    return {
        "lattice_mat": structure.lattice.matrix.tolist(),
        "coords": structure.frac_coords.tolist(),
        "elements": [site.specie.symbol for site in structure],
        "abc": list(structure.lattice.abc),
        "angles": list(structure.lattice.angles),
        "cartesian": False,
        "props": [""] * len(structure),
    }


def match_sites(initial: Structure, final: Structure) -> np.ndarray:
    """Index in ``final`` of each site of ``initial``.

    Sites listed in the same species order are matched by index. Otherwise each species is
    matched by the assignment of least total minimum-image distance (Hungarian algorithm), so
    end points whose sites are listed in different orders still give the right hop.

    Raises:
        BandBuildError: when the compositions differ.
    """
    sp_i = [s.species_string for s in initial]
    sp_f = [s.species_string for s in final]
    if sp_i == sp_f:
        return np.arange(len(initial))
    if sorted(sp_i) != sorted(sp_f):
        raise BandBuildError("end points have different compositions")
    from scipy.optimize import linear_sum_assignment

    order = np.empty(len(initial), dtype=int)
    lat = initial.lattice.matrix
    for sp in set(sp_i):
        ii = np.array([k for k, x in enumerate(sp_i) if x == sp])
        ff = np.array([k for k, x in enumerate(sp_f) if x == sp])
        d = _min_image(final.frac_coords[ff][None, :, :] - initial.frac_coords[ii][:, None, :])
        cost = np.linalg.norm(d @ lat, axis=2)
        rows, cols = linear_sum_assignment(cost)
        order[ii[rows]] = ff[cols]
    return order


def displacements(initial: Structure, final: Structure) -> tuple[np.ndarray, np.ndarray]:
    """How far each site of ``initial`` moves to its match in ``final`` (:func:`match_sites`).

    Returns:
        Minimum-image fractional displacements (sites x 3, in the initial cell) and their lengths
        in Å.

    Raises:
        BandBuildError: the compositions differ.
    """
    order = match_sites(initial, final)
    dfrac = _min_image(final.frac_coords[order] - initial.frac_coords)
    return dfrac, np.linalg.norm(dfrac @ initial.lattice.matrix, axis=1)


def migration_barrier(energies_eV: Any) -> float:
    """The migration barrier of an energy profile along a band: its highest minus its lowest energy.

    This is the literature's convention, and the one of the MLIP-NEB benchmark on the training set
    (Bheemaguli, Xiao & Sai Gautam 2026: their stored barriers are ``max - min`` of the images, also
    where the last image is the lowest). It differs from the forward barrier ``max - energies[0]``
    only where an end point or an image lies below the initial end point.

    Raises:
        ValueError: no energies, or one that is not finite.
    """
    e = np.asarray(energies_eV, dtype=float).ravel()
    if e.size == 0 or not np.isfinite(e).all():
        raise ValueError(f"a migration barrier needs finite image energies, got {e.tolist()}")
    return float(e.max() - e.min())


@dataclass
class Band:
    """A migration band: ``structure`` holds the ion's images first, then the host.

    Attributes:
        structure: periodic structure, sites ``0..n_images-1`` are the migrating ion.
        n_images: number of images of the ion (5 in the training data).
    """

    structure: Structure
    n_images: int = N_IMAGES
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.structure) <= self.n_images:
            raise BandBuildError("band has no host sites")
        species = {self.structure[i].specie.symbol for i in range(self.n_images)}
        if len(species) != 1:
            raise BandBuildError(f"band images are not one element: {sorted(species)}")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_jarvis_dict(cls, d: dict[str, Any], n_images: int = N_IMAGES) -> Band:
        """Read the dataset's band form (sites 0-4 = images, then host)."""
        return cls(structure_from_jarvis_dict(d), n_images=n_images)

    @classmethod
    def from_host(
        cls,
        host: Structure,
        ion: str,
        start_frac: np.ndarray,
        end_frac: np.ndarray,
        n_images: int = N_IMAGES,
    ) -> Band:
        """Build a band from a host (without the migrating ion) and the hop's end points.

        The displacement is taken with the minimum-image convention, so end points that come
        back wrapped across the cell give the short hop.

        Args:
            host: the host structure, without the migrating ion.
            ion: element symbol of the migrating ion.
            start_frac: fractional coordinates of the initial site in ``host``'s lattice.
            end_frac: fractional coordinates of the final site.
            n_images: number of linear images, end points included.
        """
        if n_images < 2:
            raise BandBuildError("a band needs at least 2 images")
        try:
            Element(ion)
        except ValueError as exc:
            raise BandBuildError(f"unknown element {ion!r}") from exc
        f0 = np.asarray(start_frac, dtype=float).reshape(3)
        f1 = f0 + _min_image(np.asarray(end_frac, dtype=float).reshape(3) - f0)
        t = np.linspace(0.0, 1.0, n_images)[:, None]
        images = f0[None, :] + t * (f1 - f0)[None, :]
        species = [ion] * n_images + [site.species for site in host]
        coords = np.vstack([images, host.frac_coords])
        structure = Structure(host.lattice, species, coords)
        return cls(structure, n_images=n_images)

    @classmethod
    def from_endpoints(
        cls, initial: Structure, final: Structure, n_images: int = N_IMAGES, ion: str | None = None
    ) -> Band:
        """Build the band of one hop from its initial and final structures.

        The migrating ion is the site whose position changes most (minimum image), or with
        ``ion`` the site of that element that moves most; the host is the initial structure
        without it. Sites are matched by index when both list the same species in the same
        order, else per species by least total displacement.

        Raises:
            BandBuildError: when the two structures do not describe one hop.
        """
        if len(initial) != len(final):
            raise BandBuildError(
                f"end points differ in size: {len(initial)} vs {len(final)} sites"
            )
        if len(initial) < 2:
            raise BandBuildError("end points need an ion and a host")
        dfrac, moved = displacements(initial, final)
        if ion is not None:
            mine = [i for i, site in enumerate(initial) if site.species_string == ion]
            if not mine:
                raise BandBuildError(f"no {ion} site in the end points")
            moved = np.where(np.isin(np.arange(len(initial)), mine), moved, -1.0)
        k = int(np.argmax(moved))
        if moved[k] < 0.1:
            raise BandBuildError("no site moves between the end points")
        site = initial[k]
        if not site.is_ordered:
            raise BandBuildError("the migrating site is disordered")
        ion = site.specie.symbol
        host = initial.copy()
        host.remove_sites([k])
        # The final position expressed in the initial lattice (cells may differ slightly).
        end = initial.frac_coords[k] + dfrac[k]
        return cls.from_host(host, ion, initial.frac_coords[k], end, n_images=n_images)

    # ----------------------------------------------------------------- views
    @property
    def ion(self) -> str:
        """Element symbol of the migrating ion."""
        return self.structure[0].specie.symbol

    @property
    def host(self) -> Structure:
        """The host: the band without the ion's images."""
        s = self.structure.copy()
        s.remove_sites(list(range(self.n_images)))
        return s

    @property
    def image_frac_coords(self) -> np.ndarray:
        """(n_images, 3) fractional coordinates of the ion's images."""
        return self.structure.frac_coords[: self.n_images].copy()

    @property
    def hop_length(self) -> float:
        """Distance in Å from the first to the last image (minimum image)."""
        d = _min_image(self.image_frac_coords[-1] - self.image_frac_coords[0])
        return float(np.linalg.norm(d @ self.structure.lattice.matrix))

    @property
    def num_sites(self) -> int:
        """Number of sites in the band (images + host)."""
        return len(self.structure)

    def endpoint(self, index: int) -> Structure:
        """Host plus the ion at image ``index`` (0 = initial, -1 = final), ion site first."""
        idx = index % self.n_images
        keep = [idx] + list(range(self.n_images, len(self.structure)))
        return Structure.from_sites([self.structure[i] for i in keep])

    def to_jarvis_dict(self) -> dict[str, Any]:
        """The band in the dataset's jarvis ``Atoms.to_dict()`` form."""
        return structure_to_jarvis_dict(self.structure)
