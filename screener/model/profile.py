"""Bond-valence, electrostatic and steric profile of a hop along a path that may bend.

The literature bands are straight lines between two sites, and so are the screen's; the ion's real
path bends around the anions it passes. :func:`path_profile` follows the straight segment in
:data:`N_SLICES` slices and, in each slice, looks over a disk perpendicular to it (radius up to
:data:`DISK_RADII`\\[-1] Å, shrinking to the site at either end) for the point where the ion is
best placed: the lowest cost = bond-valence mismatch + a tenth of the rise of the cation
repulsion above its end-point value (eV) + twice any overlap with a host atom (Å). Along that bent path and along the
straight one it reports:

* the bond-valence mismatch ``|BVS / V - 1|`` (Brown's bond-valence sum with the
  Brese-O'Keeffe parameters of pymatgen, b = 0.37 Å), at the sites and its rise to the worst slice;
* the electrostatic repulsion of the host cations ``14.4 V sum q / r`` within 6 Å (formal charges:
  each element's highest common oxidation state) and its rise;
* the steric gap ``r - r_ion - r_atom`` (Shannon radii) to the nearest host atom and to the
  nearest cation, at the narrowest slice, and the widest opening of the narrowest slice;
* how far the chosen path strays from the straight line, and the rise of the combined cost.

These tell a hop whose segment cuts through a polyhedron (olivine's c-axis Li-Li hop passes a
PO4 group: a cation gap of -0.2 Å and a cost rise of 3-4 against 0.8 along b) from one that only
looks narrow on the straight line. Pure function of the band, ~20 ms per band.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pymatgen.analysis.bond_valence import BV_PARAMS
from pymatgen.core import Element
from pymatgen.optimization.neighbors import find_points_in_spheres

#: Bond-valence softness b (Å) of Brown's ``s = exp((R0 - r) / b)``.
BV_B = 0.37

#: e^2 / (4 pi eps0) in eV Å.
COULOMB_EV_A = 14.399645

#: Radius (Å) of the bond-valence and Coulomb sums.
PROFILE_CUTOFF = 6.0

#: Slices along the segment (end points included).
N_SLICES = 21

#: Radii (Å) of the rings of the search disk; 12 points per ring, plus the centre.
DISK_RADII = (0.25, 0.5, 0.75, 1.0, 1.25)

#: Over this distance (Å) from either site the disk shrinks to the site itself.
SHRINK_A = 1.0

PROFILE_NAMES: tuple[str, ...] = (
    "bv_mis_end",
    "bv_mis_straight_max",
    "bv_mis_flex_max",
    "bvs_end",
    "bvs_flex_min",
    "coul_straight_max",
    "coul_flex_max",
    "gap_straight_min",
    "gap_flex_min",
    "gapc_straight_min",
    "gapc_flex_min",
    "gap_best_min",
    "gapc_best_min",
    "flex_offset_max",
    "cost_flex_max",
)


def _disk(n_angles: int = 12) -> np.ndarray:
    pts = [(0.0, 0.0)]
    for r in DISK_RADII:
        for a in np.linspace(0.0, 2.0 * np.pi, n_angles, endpoint=False):
            pts.append((r * np.cos(a), r * np.sin(a)))
    return np.array(pts)


_DISK = _disk()


@lru_cache(maxsize=None)
def bond_valence_r0(cation: str, anion: str, fallback: float) -> float:
    """Brese-O'Keeffe R0 (Å) of a cation-anion pair; ``fallback`` when an element has no parameters."""
    pc, pa = BV_PARAMS.get(Element(cation)), BV_PARAMS.get(Element(anion))
    if pc is None or pa is None:
        return float(fallback)
    ri, ci, rj, cj = pc["r"], pc["c"], pa["r"], pa["c"]
    return float(ri + rj - ri * rj * (np.sqrt(ci) - np.sqrt(cj)) ** 2 / (ci * ri + cj * rj))


def path_profile(a: np.ndarray, b: np.ndarray, lattice: np.ndarray, host_cart: np.ndarray,
                 is_anion: np.ndarray, r0: np.ndarray, charge: np.ndarray, radius: np.ndarray,
                 valence: float, ion_radius: float) -> dict[str, float]:
    """Profile descriptors of a hop from Cartesian ``a`` to ``b`` through a periodic host.

    Args:
        a: the ion's initial site (Cartesian, Å).
        b: its final site, unwrapped next to ``a``.
        lattice: the cell (rows are lattice vectors).
        host_cart: Cartesian positions of the host atoms (the ion's own sites left out).
        is_anion: which host atoms are anions.
        r0: bond-valence R0 of the ion with each host atom (used for anions only).
        charge: formal charge of each host atom (used for cations only).
        radius: Shannon radius of each host atom.
        valence: the ion's valence.
        ion_radius: the ion's Shannon radius.

    Returns:
        :data:`PROFILE_NAMES` to floats.
    """
    u = b - a
    length = float(np.linalg.norm(u))
    axis = u / max(length, 1e-9)
    ref = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(axis, ref)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    ts = np.linspace(0.0, 1.0, N_SLICES)
    shrink = np.minimum(1.0, np.minimum(ts, 1.0 - ts) * length / SHRINK_A)
    offsets = _DISK[None, :, 0, None] * e1 + _DISK[None, :, 1, None] * e2
    centres = (a[None, None] + ts[:, None, None] * u[None, None] + shrink[:, None, None] * offsets).reshape(-1, 3)
    n = len(centres)
    ci, pi, _, dist = find_points_in_spheres(
        np.ascontiguousarray(host_cart, dtype=float), np.ascontiguousarray(centres, dtype=float),
        PROFILE_CUTOFF, np.array([1, 1, 1], dtype=np.int64), np.ascontiguousarray(lattice, dtype=float), 1e-8)
    ci, pi = ci.astype(int), pi.astype(int)
    dist = np.maximum(dist, 0.3)
    an = is_anion[pi]
    bvs = np.bincount(ci, weights=np.where(an, np.exp((r0[pi] - dist) / BV_B), 0.0), minlength=n)
    coul = COULOMB_EV_A * valence * np.bincount(ci, weights=np.where(an, 0.0, charge[pi] / dist), minlength=n)
    gap_all = dist - radius[pi] - ion_radius
    gap = np.full(n, PROFILE_CUTOFF)
    np.minimum.at(gap, ci, gap_all)
    gap_c = np.full(n, PROFILE_CUTOFF)
    np.minimum.at(gap_c, ci[~an], gap_all[~an])
    shape = (N_SLICES, len(_DISK))
    bvs, coul, gap, gap_c = bvs.reshape(shape), coul.reshape(shape), gap.reshape(shape), gap_c.reshape(shape)
    mis = np.abs(bvs / valence - 1.0)
    coul_end = 0.5 * (coul[0, 0] + coul[-1, 0])
    cost = mis + np.maximum(0.0, coul - coul_end) / 10.0 + 2.0 * np.maximum(0.0, -gap)
    best = np.argmin(cost, axis=1)
    rows = np.arange(N_SLICES)

    def rise(profile: np.ndarray) -> float:
        return float(profile.max() - 0.5 * (profile[0] + profile[-1]))

    mis_end = 0.5 * (mis[0, 0] + mis[-1, 0])
    return {
        "bv_mis_end": float(mis_end),
        "bv_mis_straight_max": float(mis[:, 0].max() - mis_end),
        "bv_mis_flex_max": float(mis[rows, best].max() - mis_end),
        "bvs_end": float(0.5 * (bvs[0, 0] + bvs[-1, 0]) / valence),
        "bvs_flex_min": float(bvs[rows, best].min() / valence),
        "coul_straight_max": float(coul[:, 0].max() - coul_end),
        "coul_flex_max": float(coul[rows, best].max() - coul_end),
        "gap_straight_min": float(gap[:, 0].min()),
        "gap_flex_min": float(gap[rows, best].min()),
        "gapc_straight_min": float(gap_c[:, 0].min()),
        "gapc_flex_min": float(gap_c[rows, best].min()),
        "gap_best_min": float(gap.max(axis=1).min()),
        "gapc_best_min": float(gap_c.max(axis=1).min()),
        "flex_offset_max": float((np.linalg.norm(_DISK[best], axis=1) * shrink).max()),
        "cost_flex_max": rise(cost[rows, best]),
    }
