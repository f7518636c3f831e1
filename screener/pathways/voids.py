"""Empty sites where the working ion could sit: voids of the anion framework, judged by their neighbourhood.

The candidates are the Voronoi nodes of the anion sublattice (the centres of its tetrahedral,
octahedral and larger holes), from pymatgen-analysis-defects' ``TopographyAnalyzer`` (no charge
density needed). A node is a site for the working ion only when its neighbourhood says so:

* the nearest anion is at a bond length suited to the ion: at least ``min_bond`` times the Shannon
  radius sum of the ion in coordination IV and the anion, at most ``max_bond`` times the sum in
  coordination VIII (the ion in its most common charge);
* it is coordinated: at least ``min_coordination`` anions within ``shell`` times that distance;
* it is not inside a dense slab: at most ``max_face_sharing`` framework cations right across a face
  of its polyhedron. Two polyhedra that share a face have their centres closer than about half the
  sum of their centre-anion distances (LiCoO2: Li-layer tetrahedron and CoO6, 1.84 Å against
  1.82 + 1.92 Å; edge sharing gives ~0.7 of the sum, corner sharing ~0.9); a cation counts when it
  is closer than ``face_sharing`` times that sum *and* closer than ``close_cation`` times its own
  bond length (a small polyhedron's face: 0.9-1.0 of the bond; two octahedra across a van der
  Waals gap, as 1T-TiS2's interlayer site and the TiS6 above and below it, sit at 1.17). The
  tetrahedral site of LiCoO2's Li layer (one Co across a face) is a site; a tetrahedral hole of
  the CoO2 slab (three Co) is not; neither is a node on a cation;
* it is not part of an occupied site: no working ion closer than ``min_ion_distance`` Å, or closer
  than ``ion_share`` times the sum of the two sites' nearest-anion distances (a face-sharing
  neighbour is ~0.5 of that sum away: LiCoO2's Li-layer tetrahedron is 0.43 from the Li
  octahedron and stays; a Voronoi node 0.37 from the Na of NASICON's M1 cavity is that cavity).

Nodes closer than ``merge`` merge; the survivors are completed to whole symmetry orbits of the
structure (so the migration graph keeps its symmetry), and their number per cell is capped.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Element, Species, Structure
from pymatgen.optimization.neighbors import find_points_in_spheres

from screener.core.chemistry import anion_elements
from screener.core.errors import PathwayError, TooManyVoidsError
from screener.core.hashing import input_fingerprint

log = logging.getLogger(__name__)

#: Shannon radii (Å) of the anions (VI coordination), for the bond-length window.
ANION_RADII = {"O": 1.40, "S": 1.84, "Se": 1.98, "Te": 2.21, "F": 1.33, "Cl": 1.81, "Br": 1.96,
               "I": 2.20, "N": 1.46}


@dataclass(frozen=True)
class VoidSettings:
    """How voids are judged (see the module docstring).

    Attributes:
        min_bond: shortest ion-anion distance, as a fraction of the Shannon radius sum.
        max_bond: longest nearest-anion distance, as a fraction of that sum.
        shell: anions within this multiple of the nearest-anion distance coordinate the site.
        min_coordination: fewest coordinating anions.
        face_sharing: a framework cation closer than this fraction of (the site's nearest-anion
            distance + the cation's) shares a face with the site's polyhedron.
        close_cation: ... and closer than this multiple of its own bond length: the cation sits
            right across the shared face (a small polyhedron's), not at the 1.2x bond length of two
            octahedra sharing a face across a van der Waals gap (1T-TiS2's interlayer site).
        max_face_sharing: most such cations.
        min_cation_distance: a node closer than this to a cation (Å) is that cation's site.
        min_ion_distance: a node closer than this to a working ion (Å) is that ion's site.
        ion_share: a node closer to a working ion than this fraction of (both nearest-anion
            distances summed) lies in that ion's polyhedron.
        merge: nodes closer than this (Å) are one site.
        max_sites: most void sites per cell; more is an error (a framework too open to screen).
    """

    min_bond: float = 0.85
    max_bond: float = 1.45
    shell: float = 1.25
    min_coordination: int = 4
    face_sharing: float = 0.6
    close_cation: float = 1.1
    max_face_sharing: int = 1
    min_cation_distance: float = 1.5
    min_ion_distance: float = 1.2
    ion_share: float = 0.4
    merge: float = 1.4
    max_sites: int = 64


@dataclass(frozen=True)
class VoidSite:
    """One empty site for the working ion.

    Attributes:
        frac: fractional coordinates in the cell, in [0, 1).
        orbit: index of its symmetry orbit (0 = the first orbit found).
        coordination: anions coordinating it.
        anion_distance_A: distance to the nearest anion.
        face_sharing_cations: framework cations across a face.
    """

    frac: tuple[float, float, float]
    orbit: int
    coordination: int
    anion_distance_A: float
    face_sharing_cations: int


def ion_radius(ion: str, coordination: str = "VI") -> float:
    """Shannon radius (Å) of ``ion`` in its most common positive charge at ``coordination``.

    The nearest tabulated coordination stands in for a missing one (Ca has no IV, Al no VIII).
    """
    el = Element(ion)
    charge = max([q for q in el.common_oxidation_states if q > 0] or [1])
    order = ["IV", "VI", "VIII"] if coordination == "IV" else ["VIII", "VI", "IV"] if coordination == "VIII" \
        else ["VI", "IV", "VIII"]
    for cn in order:
        try:
            return float(Species(ion, charge).get_shannon_radius(cn))
        except (KeyError, ValueError):
            continue
    return float(el.ionic_radii.get(charge, el.atomic_radius or 1.0))


def _neighbour_distances(s: Structure, points: np.ndarray, indices: list[int], radius: float) -> list[np.ndarray]:
    """Sorted periodic distances from each point (frac) to the sites ``indices`` within ``radius``."""
    if not indices or not len(points):
        return [np.zeros(0) for _ in range(len(points))]
    lat = s.lattice
    centres = lat.get_cartesian_coords(points)
    sites = s.cart_coords[indices]
    ci, _, _, d = find_points_in_spheres(
        np.ascontiguousarray(sites, dtype=float), np.ascontiguousarray(centres, dtype=float), r=float(radius),
        pbc=np.array([1, 1, 1], dtype=np.int64), lattice=np.ascontiguousarray(lat.matrix, dtype=float), tol=1e-8)
    out: list[list[float]] = [[] for _ in range(len(points))]
    for c, dist in zip(ci, d):
        out[int(c)].append(float(dist))
    return [np.sort(np.asarray(v)) for v in out]


def _cation_distances(s: Structure, points: np.ndarray, indices: list[int],
                      radius: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each point (frac): which of ``indices`` (positions in that list) lie within ``radius``, and how far."""
    if not indices or not len(points):
        return [(np.zeros(0, dtype=int), np.zeros(0)) for _ in range(len(points))]
    lat = s.lattice
    ci, ni, _, d = find_points_in_spheres(
        np.ascontiguousarray(s.cart_coords[indices], dtype=float),
        np.ascontiguousarray(lat.get_cartesian_coords(points), dtype=float), r=float(radius),
        pbc=np.array([1, 1, 1], dtype=np.int64), lattice=np.ascontiguousarray(lat.matrix, dtype=float), tol=1e-8)
    out = []
    for k in range(len(points)):
        m = ci == k
        out.append((ni[m].astype(int), d[m]))
    return out


def _orbits(s: Structure, points: np.ndarray, symprec: float, merge: float) -> list[np.ndarray]:
    """Each point completed to its symmetry orbit in ``s``, symmetrised; points already in an orbit are skipped.

    The images of a point under the space group are clustered (``merge``, Å) and each cluster
    replaced by its mean: a node a little off a symmetry element (Voronoi nodes of a distorted
    cavity) lands on it, so the orbit is exactly symmetric.
    """
    from pymatgen.analysis.defects.utils import cluster_nodes
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    ops = SpacegroupAnalyzer(s, symprec=symprec).get_symmetry_operations(cartesian=False)
    lat = s.lattice
    orbits: list[np.ndarray] = []
    for p in points:
        if any(lat.get_all_distances(p[None, :], o)[0].min() < merge for o in orbits):
            continue
        images = np.array([op.operate(p) % 1.0 for op in ops])
        orbit = np.array(cluster_nodes(images, lat, tol=merge)).reshape(-1, 3) % 1.0
        orbits.append(orbit[np.lexsort(orbit.T[::-1])])
    return orbits


def find_voids(structure: Structure, ion: str, settings: VoidSettings | None = None,
               symprec: float = 0.1) -> list[VoidSite]:
    """Empty sites for ``ion`` in ``structure`` (which may hold the ion on other sites).

    Args:
        structure: an ordered cell (its working-ion sites, if any, count as occupied).
        ion: element symbol of the working ion.
        settings: the judgement of a void (:class:`VoidSettings`).
        symprec: symmetry tolerance (Å) of the orbit completion.

    Returns:
        The void sites, whole orbits, ordered by orbit; empty when none qualifies.

    Raises:
        TooManyVoidsError: more than ``settings.max_sites`` void sites in the cell.
        PathwayError: the Voronoi analysis failed.
    """
    from pymatgen.analysis.defects.utils import TopographyAnalyzer, cluster_nodes

    st = settings or VoidSettings()
    t0 = time.perf_counter()
    elements = sorted({site.specie.symbol for site in structure})
    framework = [e for e in elements if e != ion]
    anions = sorted(anion_elements(framework))
    anion_idx = [i for i, site in enumerate(structure) if site.specie.symbol in anions]
    cation_idx = [i for i, site in enumerate(structure) if site.specie.symbol not in anions and site.specie.symbol != ion]
    ion_idx = [i for i, site in enumerate(structure) if site.specie.symbol == ion]
    if not anion_idx:
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            topo = TopographyAnalyzer(structure, anions, [], check_volume=False)
    except Exception as exc:  # noqa: BLE001 - scipy/Voronoi failures of odd cells
        raise PathwayError(f"Voronoi analysis of {structure.composition.reduced_formula} failed: "
                           f"{type(exc).__name__}: {exc}") from exc
    nodes = np.array([np.asarray(v.frac_coords, dtype=float) % 1.0 for v in topo.vnodes]).reshape(-1, 3)
    if len(nodes) > 1:
        nodes = np.array(cluster_nodes(nodes, structure.lattice, tol=st.merge)).reshape(-1, 3) % 1.0
    r_anion = float(np.mean([ANION_RADII.get(a, 1.4) for a in anions]))
    shortest = st.min_bond * (ion_radius(ion, "IV") + r_anion)
    longest = st.max_bond * (ion_radius(ion, "VIII") + r_anion)
    # each framework cation's own bond length: its nearest anion
    cation_bond = np.array([d[0] if len(d) else 2.0 for d in _neighbour_distances(
        structure, structure.frac_coords[cation_idx], anion_idx, 4.0)]) if cation_idx else np.zeros(0)
    reach = max(longest * st.shell, st.face_sharing * (longest + 4.0), st.min_ion_distance) + 0.1
    d_anion = _neighbour_distances(structure, nodes, anion_idx, reach)
    cation_d = _cation_distances(structure, nodes, cation_idx, reach)
    ion_d = _cation_distances(structure, nodes, ion_idx, reach)
    ion_bond = np.array([d[0] if len(d) else 2.0 for d in _neighbour_distances(
        structure, structure.frac_coords[ion_idx], anion_idx, 4.0)]) if ion_idx else np.zeros(0)
    keep, info = [], []
    for k in range(len(nodes)):
        da = d_anion[k]
        if not len(da) or not shortest <= da[0] <= longest:
            continue
        cn = int((da <= st.shell * da[0]).sum())
        which, dist = cation_d[k]
        dc = np.sort(dist)
        face = int(((dist < st.face_sharing * (da[0] + cation_bond[which]))
                    & (dist < st.close_cation * cation_bond[which])).sum()) if len(dist) else 0
        if cn < st.min_coordination or face > st.max_face_sharing:
            continue
        if len(dc) and dc[0] < st.min_cation_distance:
            continue
        which_ion, dist_ion = ion_d[k]
        if len(dist_ion) and ((dist_ion < st.min_ion_distance).any()
                              or (dist_ion < st.ion_share * (da[0] + ion_bond[which_ion])).any()):
            continue
        keep.append(nodes[k])
        info.append((cn, float(da[0]), face))
    if not keep:
        log.debug("%s: no void for %s among %d Voronoi nodes", structure.composition.reduced_formula, ion, len(nodes))
        return []
    orbits = _orbits(structure, np.array(keep), symprec, st.merge)
    n = sum(len(o) for o in orbits)
    if n > st.max_sites:
        raise TooManyVoidsError(
            f"{structure.composition.reduced_formula}: {n} void sites for {ion} in a cell of {len(structure)} "
            f"sites > {st.max_sites}; the framework is too open to screen site by site (use a smaller cell, "
            "or screen its occupied sites)")
    out = []
    lat = structure.lattice
    keep_arr = np.array(keep)
    for label, orbit in enumerate(orbits):
        cn, da, face = info[int(np.argmin(lat.get_all_distances(orbit[:1], keep_arr)[0]))]
        out.extend(VoidSite(tuple(float(x) for x in q), label, cn, round(da, 4), face) for q in orbit)
    log.debug("%s: %d void sites (%d orbits) for %s from %d Voronoi nodes in %.2f s",
              structure.composition.reduced_formula, len(out), len(orbits), ion, len(nodes), time.perf_counter() - t0)
    return out


_CACHE: dict[tuple, list[VoidSite]] = {}
_CACHE_SIZE = 512


def cached_voids(structure: Structure, ion: str, symprec: float = 0.1,
                 settings: VoidSettings | None = None) -> list[VoidSite]:
    """:func:`find_voids`, computed once per process for a structure (by content hash)."""
    st = settings or VoidSettings()
    key = (input_fingerprint(structure), ion, symprec, st)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = find_voids(structure, ion, st, symprec)
    return _CACHE[key]
