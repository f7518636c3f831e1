"""Migration pathways: from a host structure to the distinct hops of the working ion, and bands.

The hop network comes from pymatgen-analysis-diffusion's :class:`MigrationGraph` (every pair of
working-ion sites closer than a cutoff, grouped into symmetry-distinct hops). This module wraps it:

* it validates and cleans the structure first (oxidation states and site properties removed,
  typed errors for disorder, missing ion or host, close contacts, non-finite coordinates);
* it gives each distinct hop a content-derived, stable id and a canonical representative;
* it builds, for each hop and limit, the band the model reads: a supercell host reaching
  :data:`DEFAULT_MIN_WIDTH` in every perpendicular width plus 5 linear images of the ion;
* it exports IDPP images of a band for NEB codes.

Limits:
    ``vacancy``: discharged host; every other working-ion site is occupied, the end site is empty.
    ``dilute``: charged host; every other working ion is removed.

The training bands (Devi et al., Sci. Data 2025) are "the host of the initial image without the
migrating ion", so the vacancy-limit host is the supercell without the ion's start and end sites,
and the dilute-limit host is the supercell without any working ion.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import Any

import numpy as np
from pymatgen.core import Structure

from screener.core.errors import (
    NoHopsError,
    PathwayError,
)
from screener.pathways.checks import (
    check_cell_size,
    check_structure,
    clean_structure,
    is_ion_site,
)
from screener.pathways.config import PRIM_TOL, ROUND_DECIMALS, PathwayConfig
from screener.pathways.hop import Hop
from screener.pathways.network import HostPathways
from screener.pathways.percolation import Edge
from screener.pathways.supercell import wrap_frac
from screener.pathways.voids import cached_voids

log = logging.getLogger(__name__)


def migration_graph(structure: Structure, ion: str, cutoff: float, symprec: float = 0.1) -> Any:
    """pymatgen-analysis-diffusion's MigrationGraph of a cleaned structure.

    The symmetrized structure is computed once instead of once per edge (the upstream property
    recomputes it), which also lets hop comparison short-circuit on identity: ~40x faster.
    """
    return _cached_migration_graph_class().with_distance(structure, ion, cutoff, symprec=symprec)


@functools.cache
def _cached_migration_graph_class() -> type:
    """MigrationGraph with a cached ``symm_structure`` (imported lazily: a slow import)."""
    from pymatgen.analysis.diffusion.neb.full_path_mapper import MigrationGraph
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    class CachedMigrationGraph(MigrationGraph):
        _symm_cache: Any = None

        @property
        def symm_structure(self) -> Any:  # type: ignore[override]
            if self._symm_cache is None:
                sga = SpacegroupAnalyzer(self.structure, symprec=self.symprec)
                self._symm_cache = sga.get_symmetrized_structure()
            return self._symm_cache

    return CachedMigrationGraph


def _rounded(x: np.ndarray, decimals: int = ROUND_DECIMALS) -> tuple[float, ...]:
    """Rounded coordinates without negative zeros."""
    return tuple(float(v) + 0.0 for v in np.round(np.asarray(x, dtype=float), decimals))


def _canonical(a: np.ndarray, b: np.ndarray) -> tuple[tuple[float, ...], np.ndarray, np.ndarray]:
    """Canonical key of the segment a-b: min over both directions of (wrapped start, vector)."""
    best = None
    for p, q in ((a, b), (b, a)):
        start = wrap_frac(p)
        vec = q - p
        key = tuple(x % 1.0 + 0.0 for x in _rounded(start)) + _rounded(vec)
        if best is None or key < best[0]:
            best = (key, start, start + vec)
    assert best is not None
    return best


def _hop_id(structure: Structure, ion: str, limit: str, length: float, key: tuple) -> str:
    """A short sha256 of the hop's rounded, canonical description."""
    lat = structure.lattice
    text = "|".join([
        structure.composition.reduced_formula,
        ion,
        limit,
        ",".join(f"{v:.2f}" for v in (*lat.abc, *lat.angles)),
        f"{length:.{ROUND_DECIMALS}f}",
        ",".join(f"{v:.{ROUND_DECIMALS}f}" for v in key),
    ])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _nearest_ion_distance(s: Structure, ion: str, radius: float) -> float | None:
    """Shortest distance (Å) between two sites of the ion (periodic images included), or None
    when there is none within ``radius``."""
    idx = [i for i, site in enumerate(s) if is_ion_site(site, ion)]
    if not idx:
        return None
    centres, points, _, dist = s.get_neighbor_list(radius, sites=[s[i] for i in idx])
    ion_set = set(idx)
    d = [float(x) for p, x in zip(points, dist) if int(p) in ion_set and x > 1e-3]
    return min(d) if d else None


def find_pathways(
    structure: Structure, ion: str, config: PathwayConfig | None = None
) -> HostPathways:
    """The distinct hops of the working ion up to ``config.cutoff``, in each limit.

    A host with no hop that short gets its nearest-neighbour hops, up to ``config.max_cutoff``.

    Args:
        structure: the host structure with the working ion on its sites.
        ion: element symbol of the working ion.
        config: parameters; defaults to :class:`PathwayConfig()`.

    Returns:
        The cleaned structure, its distinct hops x limits and the periodic hop network.

    Raises:
        StructureReadError, NoWorkingIonError, NoHostFrameworkError, DisorderedStructureError,
        CloseContactError: see :func:`check_structure`.
        NoHopsError: no hop of the ion is shorter than the cutoff.
        PathwayError: symmetry analysis or the migration graph failed.
    """
    config = config or PathwayConfig()
    voids_mode = config.sites == "voids"
    s = check_structure(structure, ion, config.min_distance, config.order_disordered, require_ion=not voids_mode)
    check_cell_size(s, ion, config)
    if config.primitive:
        prim = s.get_primitive_structure(tolerance=PRIM_TOL)
        if len(prim) < len(s):
            log.debug("%s: primitive cell of %d sites instead of %d",
                         s.composition.reduced_formula, len(prim), len(s))
            s = clean_structure(prim)
    real = s  # the host as it is: hop ids and the screened cell's hash are of this cell
    limits = config.limits
    void_sites: list[int] = []
    if voids_mode:
        s, void_sites = with_void_sites(real, ion, config.symprec)
        if not any(is_ion_site(site, ion) for site in real):
            limits = ("dilute",)  # an empty framework: its hops are the dilute limit
    cutoff = config.cutoff
    nearest = _nearest_ion_distance(s, ion, max(config.cutoff, config.max_cutoff))
    if nearest is not None and nearest > config.cutoff:
        cutoff = min(1.1 * nearest, config.max_cutoff)
        log.info("%s: no %s-%s hop within %.2f Å; nearest-neighbour hops up to %.2f Å used",
                    s.composition.reduced_formula, ion, ion, config.cutoff, cutoff)
    try:
        mg = migration_graph(s, ion, cutoff, config.symprec)
    except Exception as exc:  # noqa: BLE001 - spglib / pymatgen-analysis-diffusion failures
        raise PathwayError(
            f"migration graph of {s.composition.reduced_formula} failed at symprec="
            f"{config.symprec}: {type(exc).__name__}: {exc}"
        ) from exc
    ion_sites = [i for i, site in enumerate(s) if is_ion_site(site, ion)]
    kinds = ["void" if i in set(void_sites) else "occupied" for i in ion_sites]
    graph = mg.m_graph.graph
    frac = mg.only_sites.frac_coords
    if graph.number_of_edges() == 0:
        raise NoHopsError(
            f"no {ion}-{ion} hop shorter than {max(cutoff, config.max_cutoff):g} Å in "
            f"{s.composition.reduced_formula}: its {ion} sites are too far apart for hops"
        )

    # Canonical representative and key of each distinct hop, independent of enumeration order. The
    # symmetry was found with every void filled, which can be higher than the host's (an ion on
    # part of a set of equivalent sites): a label's edges are told apart by the kinds of their
    # end sites, so that occupied-occupied, occupied-void and void-void hops stay distinct.
    def group_of(u: int, v: int, label: int) -> tuple[int, tuple[str, ...]]:
        return label, tuple(sorted((kinds[u], kinds[v])))

    groups: dict[tuple[int, tuple[str, ...]], dict[str, Any]] = {}
    for u, v, d in graph.edges(data=True):
        a = frac[u]
        b = frac[v] + np.asarray(d["to_jimage"], dtype=float)
        key, start, end = _canonical(a, b)
        g = groups.setdefault(group_of(u, v, d["hop_label"]), {"n": 0, "key": None})
        g["n"] += 1
        if g["key"] is None or key < g["key"]:
            length = float(np.linalg.norm(s.lattice.get_cartesian_coords(end - start)))
            g.update(key=key, start=start, end=end, length=length,
                     nodes=(u, v) if np.allclose(wrap_frac(a), start) else (v, u))
    order = sorted(groups, key=lambda g: (round(groups[g]["length"], ROUND_DECIMALS), groups[g]["key"], g[1]))
    relabel = {old: new for new, old in enumerate(order)}

    wyckoffs = _wyckoffs(mg)
    hops: list[Hop] = []
    for old in order:
        g = groups[old]
        iu, ev = g["nodes"]
        for limit in limits:
            if limit == "vacancy" and kinds[iu] == kinds[ev] == "void":
                continue  # an ion between two empty sites of the full host is no vacancy hop
            hops.append(Hop(
                hop_id=_hop_id(real, ion, limit, g["length"], g["key"]),
                ion=ion,
                limit=limit,
                hop_label=relabel[old],
                length_A=round(g["length"], 6),
                multiplicity=int(g["n"]),
                isite_frac=tuple(float(x) for x in g["start"]),  # type: ignore[arg-type]
                esite_frac=tuple(float(x) for x in g["end"]),  # type: ignore[arg-type]
                isite_index=ion_sites[iu],
                esite_index=ion_sites[ev],
                isite_wyckoff=wyckoffs.get(ion_sites[iu], ""),
                esite_wyckoff=wyckoffs.get(ion_sites[ev], ""),
                isite_kind=kinds[iu],
                esite_kind=kinds[ev],
            ))
    edges: list[Edge] = []
    for u, v, d in graph.edges(data=True):
        new = relabel[group_of(u, v, d["hop_label"])]
        d["hop_label"] = new  # keep the MigrationGraph consistent with our labels
        jimage = tuple(int(x) for x in d["to_jimage"])
        edges.append((int(u), int(v), jimage, new))  # type: ignore[arg-type]
    spacegroup = _spacegroup(real, config.symprec) if void_sites else (
        mg.symm_structure.spacegroup.int_symbol, int(mg.symm_structure.spacegroup.int_number))
    return HostPathways(structure=s, ion=ion, hops=hops, edges=edges, ion_sites=ion_sites,
                        spacegroup=spacegroup, config=config, cutoff_A=float(cutoff), void_sites=void_sites)


def with_void_sites(structure: Structure, ion: str, symprec: float = 0.1) -> tuple[Structure, list[int]]:
    """``structure`` with the ion added at its void sites (:func:`~screener.pathways.voids.find_voids`).

    Returns:
        The cell with the ion on its occupied and void sites, and the indices of the void ones.

    Raises:
        NoHopsError: the framework has no void for the ion and holds none of it.
        TooManyVoidsError: more void sites than the cap.
    """
    voids = cached_voids(structure, ion, symprec)
    if not voids and not any(is_ion_site(site, ion) for site in structure):
        raise NoHopsError(f"{structure.composition.reduced_formula} has no void where {ion} fits "
                          "(see screener.pathways.voids for the criteria)")
    s = structure.copy()
    for v in voids:
        s.append(ion, v.frac, coords_are_cartesian=False)
    return s, list(range(len(structure), len(s)))


def _spacegroup(structure: Structure, symprec: float) -> tuple[str, int]:
    """Space group symbol and number of the host as it is (not with its voids filled)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sga = SpacegroupAnalyzer(structure, symprec=symprec)
    return sga.get_space_group_symbol(), int(sga.get_space_group_number())


def _wyckoffs(mg: Any) -> dict[int, str]:
    """Wyckoff label (conventional multiplicity and letter) of each site of the graph's cell."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sym = mg.symm_structure
    try:
        dataset = SpacegroupAnalyzer(mg.structure, symprec=mg.symprec).get_symmetry_dataset()
        factor = len(dataset.std_types) / len(mg.structure)
    except Exception:  # noqa: BLE001 - labels are informative only
        factor = 1.0
    out: dict[int, str] = {}
    for label, indices in zip(sym.wyckoff_symbols, sym.equivalent_indices, strict=False):
        letter = label.lstrip("0123456789")
        mult = round(len(indices) * factor)
        for i in indices:
            out[int(i)] = f"{mult}{letter}"
    return out
