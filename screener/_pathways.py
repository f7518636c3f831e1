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
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from screener._band import N_IMAGES, Band
from screener._errors import (
    BandBuildError,
    BandTooLargeError,
    CloseContactError,
    DisorderedStructureError,
    NoHopsError,
    NoHostFrameworkError,
    NoWorkingIonError,
    ScreenerError,
    StructureReadError,
)
from screener._percolation import Edge, percolation_barriers

logger = logging.getLogger(__name__)


class PathwayError(ScreenerError):
    """The hop network could not be built (symmetry or migration-graph failure)."""

    stage = "pathways"


LIMITS: tuple[str, ...] = ("vacancy", "dilute")

#: Default minimum perpendicular width (Å) of a band's supercell. The 559 training bands have a
#: minimum perpendicular width of median 9.63 Å (quartiles 7.97 / 10.63 Å, range 5.2-22.9 Å).
#: A supercell grown until it *reaches* the target overshoots it, so the default is rounded down.
DEFAULT_MIN_WIDTH = 9.5

_PRIM_TOL = 0.01  # Å, tolerance of the primitive-cell search (translations must be exact)
_WRAP_TOL = 1e-4  # fractional coordinates this close below 1 wrap to ~0
_ROUND = 3  # decimals of fractional coordinates and lengths in hop ids


# --------------------------------------------------------------------------- config and records
@dataclass(frozen=True)
class PathwayConfig:
    """Parameters of hop finding and band building.

    Attributes:
        cutoff: maximum hop length in Å.
        max_cutoff: when no hop is shorter than ``cutoff``, hosts whose ion sites are farther
            apart (e.g. the cavities of Chevrel phases, 6.4-6.6 Å) get their nearest-neighbour
            hops instead: the cutoff is raised to 1.1 x the shortest ion-ion distance, up to this
            value (Å). Set it to ``cutoff`` (or less) to turn this off.
        min_width: minimum perpendicular width of a band's supercell in Å.
        max_band_sites: largest band (images + host) built; larger ones raise BandTooLargeError.
        limits: the limits to list each distinct hop in (``vacancy``, ``dilute``).
        min_distance: smallest allowed interatomic distance in Å.
        order_disordered: order partially occupied structures (lowest Ewald energy) instead of
            refusing them.
        symprec: symmetry tolerance in Å used to group equivalent hops.
        n_images: number of linear images of the ion in a band, end points included.
        primitive: work in the primitive cell (hops, coordinates, bands) when the input cell
            is a supercell of it (e.g. a centred conventional cell): faster, smaller bands.
    """

    cutoff: float = 5.0
    max_cutoff: float = 7.0
    min_width: float = DEFAULT_MIN_WIDTH
    max_band_sites: int = 1000
    limits: tuple[str, ...] = LIMITS
    min_distance: float = 0.5
    order_disordered: bool = False
    symprec: float = 0.1
    n_images: int = N_IMAGES
    primitive: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cutoff) and self.cutoff > 0):
            raise ValueError(f"cutoff must be a positive number of Å, got {self.cutoff!r}")
        if not math.isfinite(self.max_cutoff):
            raise ValueError(f"max_cutoff must be a finite number of Å, got {self.max_cutoff!r}")
        if not (math.isfinite(self.min_width) and self.min_width >= 0):
            raise ValueError(f"min_width must be >= 0 Å, got {self.min_width!r}")
        if self.max_band_sites < 1:
            raise ValueError(f"max_band_sites must be positive, got {self.max_band_sites!r}")
        bad = [lim for lim in self.limits if lim not in LIMITS]
        if bad or not self.limits:
            raise ValueError(f"limits must be a non-empty subset of {LIMITS}, got {self.limits!r}")
        if self.symprec <= 0:
            raise ValueError(f"symprec must be positive, got {self.symprec!r}")
        if self.n_images < 2:
            raise ValueError(f"n_images must be at least 2, got {self.n_images!r}")


@dataclass(frozen=True)
class Hop:
    """One distinct hop of the working ion in one limit.

    Attributes:
        hop_id: stable id derived from the hop's content (12 hex digits).
        ion: element symbol of the working ion.
        limit: ``vacancy`` or ``dilute``.
        hop_label: index of the distinct hop (0 = shortest); the label of its edges in
            :attr:`HostPathways.edges`. Both limits of one hop share it.
        length_A: hop length in Å.
        multiplicity: number of symmetry-equivalent hops per unit cell.
        isite_frac: fractional coordinates of the initial site, wrapped into the cell
            ([-1e-4, 1 - 1e-4): a site at 0 stays near 0).
        esite_frac: fractional coordinates of the final site, not wrapped: ``esite - isite`` is
            the hop vector.
        isite_index: index of the initial site in :attr:`HostPathways.structure`.
        esite_index: index of the final site (its copy inside the unit cell).
        isite_wyckoff: Wyckoff label of the initial site (``""`` if unknown).
        esite_wyckoff: Wyckoff label of the final site.
    """

    hop_id: str
    ion: str
    limit: str
    hop_label: int
    length_A: float
    multiplicity: int
    isite_frac: tuple[float, float, float]
    esite_frac: tuple[float, float, float]
    isite_index: int = -1
    esite_index: int = -1
    isite_wyckoff: str = ""
    esite_wyckoff: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The hop as a JSON-ready mapping."""
        d = asdict(self)
        d["isite_frac"] = list(self.isite_frac)
        d["esite_frac"] = list(self.esite_frac)
        return d


@dataclass
class HostPathways:
    """The distinct hops of the working ion in one structure, and the periodic hop network.

    Attributes:
        structure: the cleaned unit cell (oxidation states and site properties removed).
        ion: element symbol of the working ion.
        hops: distinct hops x limits, ordered by length, then label, then limit.
        edges: the periodic graph of all symmetry-equivalent hops: ``(u, v, to_jimage,
            hop_label)`` where ``u``, ``v`` index :attr:`ion_sites` and ``to_jimage`` is the
            cell of ``v`` relative to ``u``.
        ion_sites: index in :attr:`structure` of each graph node.
        spacegroup: international symbol and number found at ``config.symprec``.
        config: the parameters the hops were found with.
        cutoff_A: the hop-length cutoff actually used: ``config.cutoff``, or more for a host
            whose nearest ion-ion distance is longer (see :class:`PathwayConfig`).
    """

    structure: Structure
    ion: str
    hops: list[Hop]
    edges: list[Edge]
    ion_sites: list[int]
    spacegroup: tuple[str, int] = ("", 0)
    config: PathwayConfig = field(default_factory=PathwayConfig)
    cutoff_A: float = 0.0

    @property
    def formula(self) -> str:
        """Reduced formula of the structure."""
        return self.structure.composition.reduced_formula

    def hop(self, hop_id: str) -> Hop:
        """The hop with this id.

        Raises:
            KeyError: when no hop has it.
        """
        for h in self.hops:
            if h.hop_id == hop_id:
                return h
        raise KeyError(hop_id)

    def supercell_matrix(self, hop: Hop, config: PathwayConfig | None = None) -> np.ndarray:
        """Integer supercell matrix of a hop's band (rows in vectors of :attr:`structure`)."""
        config = config or self.config
        return _supercell_matrix(self.structure.lattice, _hop_cart_vector(self.structure, hop),
                                 config.min_width)

    def band_size(self, hop: Hop, config: PathwayConfig | None = None) -> int:
        """Number of sites of the hop's band (images + host), without building it."""
        config = config or self.config
        n_cells = round(abs(np.linalg.det(self.supercell_matrix(hop, config))))
        removed = 2 if hop.limit == "vacancy" else len(self.ion_sites) * n_cells
        return len(self.structure) * n_cells - removed + config.n_images

    def band(self, hop: Hop, config: PathwayConfig | None = None) -> Band:
        """The supercell band of a hop; see :func:`build_band`."""
        return build_band(self, hop, config)

    def percolation(self, barrier_by_hop_id: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """Percolation barriers per limit from a barrier per hop id.

        Args:
            barrier_by_hop_id: barrier (eV) of each hop id; missing hops never open.

        Returns:
            ``{limit: {"1D": x, "2D": y, "3D": z}}`` for each limit among :attr:`hops`.
        """
        out: dict[str, dict[str, float]] = {}
        for limit in dict.fromkeys(h.limit for h in self.hops):
            by_label = {h.hop_label: float(barrier_by_hop_id[h.hop_id])
                        for h in self.hops if h.limit == limit and h.hop_id in barrier_by_hop_id}
            out[limit] = percolation_barriers(self.edges, by_label)
        return out


# --------------------------------------------------------------------------- reading and checks
def read_structure(path: str | Path) -> Structure:
    """Read a structure file (CIF, POSCAR, pymatgen JSON...) with pymatgen.

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
    for msg in dict.fromkeys(str(w.message) for w in caught):
        logger.warning("%s: %s", path, msg)
    if not isinstance(structure, Structure) or len(structure) == 0:
        raise StructureReadError(f"{path}: no sites read")
    return structure


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


def _clean(structure: Structure) -> Structure:
    """A copy without oxidation states or site properties, coordinates wrapped into the cell."""
    s = structure.copy()
    s.remove_oxidation_states()
    return Structure(s.lattice, [site.species for site in s], s.frac_coords, to_unit_cell=True)


def _order(structure: Structure) -> Structure:
    """The lowest-Ewald-energy ordering of a disordered structure (oxidation states guessed)."""
    from pymatgen.transformations.standard_transformations import (
        OrderDisorderedStructureTransformation,
    )

    s = structure.copy()
    try:
        s.add_oxidation_state_by_guess()
        ordered = OrderDisorderedStructureTransformation().apply_transformation(s)
    except Exception as exc:  # noqa: BLE001 - enumeration fails in many ways
        raise DisorderedStructureError(
            f"could not order the disordered structure {s.composition.formula}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(ordered, list):  # ranked list form
        ordered = ordered[0]["structure"]
    logger.info("ordered %s as %s", structure.composition.formula, ordered.composition.formula)
    return _clean(ordered)


def check_structure(
    structure: Structure,
    ion: str,
    min_distance: float = 0.5,
    order_disordered: bool = False,
) -> Structure:
    """Validate a host structure and return a cleaned copy.

    Args:
        structure: the input structure (not modified).
        ion: element symbol of the working ion.
        min_distance: smallest allowed interatomic distance in Å.
        order_disordered: order a disordered structure instead of refusing it.

    Returns:
        A copy without oxidation states or site properties, coordinates wrapped into the cell.

    Raises:
        StructureReadError: non-finite lattice or coordinates, or a singular lattice.
        NoWorkingIonError: no site holds ``ion`` (or ``ion`` is not an element).
        NoHostFrameworkError: every site is ``ion``.
        DisorderedStructureError: partially occupied sites and ``order_disordered`` is False.
        CloseContactError: two sites closer than ``min_distance``.
    """
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.all(np.isfinite(matrix)) or not np.all(np.isfinite(structure.frac_coords)):
        bad = [i for i, f in enumerate(structure.frac_coords) if not np.all(np.isfinite(f))]
        raise StructureReadError(
            f"non-finite lattice or coordinates (NaN/inf) in {structure.composition.formula}"
            + (f" at sites {bad[:10]}" if bad else "")
        )
    if abs(np.linalg.det(matrix)) < 1e-6:
        raise StructureReadError("the lattice is singular (zero volume)")
    try:
        el = Element(ion)
    except ValueError as exc:
        raise NoWorkingIonError(f"{ion!r} is not an element") from exc
    s = _clean(structure)
    elements = {e.symbol for e in s.composition.elements}
    if el.symbol not in elements:
        raise NoWorkingIonError(f"{s.composition.reduced_formula} holds no {el.symbol}")
    if elements == {el.symbol}:
        raise NoHostFrameworkError(
            f"{s.composition.reduced_formula} has no host framework: "
            f"every site is the working ion {el.symbol}"
        )
    if not s.is_ordered:
        if not order_disordered:
            n = sum(1 for site in s if not site.is_ordered)
            raise DisorderedStructureError(
                f"{s.composition.formula} has {n} partially occupied sites; "
                "order it first or ask for order_disordered"
            )
        s = _order(s)
        if el.symbol not in {e.symbol for e in s.composition.elements}:
            raise NoWorkingIonError(
                f"the ordering of {structure.composition.formula} holds no {el.symbol}"
            )
    _check_contacts(s, min_distance)
    return s


def _check_contacts(s: Structure, min_distance: float) -> None:
    """Raise CloseContactError when two sites (or a site and its image) are too close."""
    if min_distance <= 0:
        return
    centers, points, _, dists = s.get_neighbor_list(r=min_distance, exclude_self=True)
    mask = dists < min_distance
    if np.any(mask):
        k = int(np.argmin(np.where(mask, dists, np.inf)))
        i, j = int(centers[k]), int(points[k])
        raise CloseContactError(
            f"sites {i} ({s[i].species_string}) and {j} ({s[j].species_string}) are "
            f"{dists[k]:.3f} Å apart, below the minimum {min_distance} Å"
        )


def _smallest_band(n_sites: int, n_ion: float, config: PathwayConfig) -> int:
    """Fewest sites any band of a cell can have: one cell, the ion's sites removed, the images."""
    removed = {"vacancy": min(2.0, n_ion), "dilute": n_ion}
    return min(round(n_sites - removed[lim]) for lim in config.limits) + config.n_images


def _check_cell_size(s: Structure, ion: str, config: PathwayConfig) -> None:
    """Refuse, before any slow symmetry analysis, a cell whose smallest band is over the cap.

    A cell over the cap may be a supercell of a small one; spglib's primitive search (C, about a
    second for 6,000 sites) tells, where pymatgen's primitive search and the migration graph
    would take minutes to hours.

    Raises:
        BandTooLargeError: even a band of one primitive cell exceeds ``config.max_band_sites``.
    """
    n = len(s)
    n_ion = sum(1 for site in s if _is_ion_site(site, ion))
    if _smallest_band(n, n_ion, config) <= config.max_band_sites:
        return
    n_prim = n
    if config.primitive:
        import spglib

        cell = (s.lattice.matrix, s.frac_coords, [site.specie.Z for site in s])
        try:
            found = spglib.find_primitive(cell, symprec=_PRIM_TOL)
            if found is not None:
                n_prim = len(found[2])
        except Exception as exc:  # noqa: BLE001 - the size check must not fail on its own
            logger.debug("spglib primitive search failed: %s", exc)
    smallest = _smallest_band(n_prim, n_ion * n_prim / n, config)
    if smallest > config.max_band_sites:
        repeat = ("no smaller repeating unit" if n_prim == n
                  else f"a primitive cell of {n_prim} sites")
        raise BandTooLargeError(
            f"{s.composition.reduced_formula}: the cell has {n} sites and {repeat}, so even the "
            f"smallest band would have {smallest} sites > max_band_sites={config.max_band_sites}; "
            "refused before symmetry analysis. Supply the ordered primitive cell, or raise "
            "--max-band-sites"
        )


# --------------------------------------------------------------------------- migration graph
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


def _wrap(x: np.ndarray) -> np.ndarray:
    """Fractional coordinates wrapped into [-1e-4, 1 - 1e-4): a site at -1e-6 stays near 0."""
    y = np.asarray(x, dtype=float) % 1.0
    return np.where(y >= 1.0 - _WRAP_TOL, y - 1.0, y)


def _rounded(x: np.ndarray, decimals: int = _ROUND) -> tuple[float, ...]:
    """Rounded coordinates without negative zeros."""
    return tuple(float(v) + 0.0 for v in np.round(np.asarray(x, dtype=float), decimals))


def _canonical(a: np.ndarray, b: np.ndarray) -> tuple[tuple[float, ...], np.ndarray, np.ndarray]:
    """Canonical key of the segment a-b: min over both directions of (wrapped start, vector)."""
    best = None
    for p, q in ((a, b), (b, a)):
        start = _wrap(p)
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
        f"{length:.{_ROUND}f}",
        ",".join(f"{v:.{_ROUND}f}" for v in key),
    ])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _nearest_ion_distance(s: Structure, ion: str, radius: float) -> float | None:
    """Shortest distance (Å) between two sites of the ion (periodic images included), or None
    when there is none within ``radius``."""
    idx = [i for i, site in enumerate(s) if _is_ion_site(site, ion)]
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
    s = check_structure(structure, ion, config.min_distance, config.order_disordered)
    _check_cell_size(s, ion, config)
    if config.primitive:
        prim = s.get_primitive_structure(tolerance=_PRIM_TOL)
        if len(prim) < len(s):
            logger.debug("%s: primitive cell of %d sites instead of %d",
                         s.composition.reduced_formula, len(prim), len(s))
            s = _clean(prim)
    cutoff = config.cutoff
    nearest = _nearest_ion_distance(s, ion, max(config.cutoff, config.max_cutoff))
    if nearest is not None and nearest > config.cutoff:
        cutoff = min(1.1 * nearest, config.max_cutoff)
        logger.info("%s: no %s-%s hop within %.2f Å; nearest-neighbour hops up to %.2f Å used",
                    s.composition.reduced_formula, ion, ion, config.cutoff, cutoff)
    try:
        mg = migration_graph(s, ion, cutoff, config.symprec)
    except Exception as exc:  # noqa: BLE001 - spglib / pymatgen-analysis-diffusion failures
        raise PathwayError(
            f"migration graph of {s.composition.reduced_formula} failed at symprec="
            f"{config.symprec}: {type(exc).__name__}: {exc}"
        ) from exc
    ion_sites = [i for i, site in enumerate(s) if _is_ion_site(site, ion)]
    graph = mg.m_graph.graph
    frac = mg.only_sites.frac_coords
    if graph.number_of_edges() == 0:
        raise NoHopsError(
            f"no {ion}-{ion} hop shorter than {max(cutoff, config.max_cutoff):g} Å in "
            f"{s.composition.reduced_formula}: its {ion} sites are too far apart for hops"
        )

    # Canonical representative and key of each distinct hop, independent of enumeration order.
    groups: dict[int, dict[str, Any]] = {}
    for u, v, d in graph.edges(data=True):
        a = frac[u]
        b = frac[v] + np.asarray(d["to_jimage"], dtype=float)
        key, start, end = _canonical(a, b)
        g = groups.setdefault(d["hop_label"], {"n": 0, "key": None})
        g["n"] += 1
        if g["key"] is None or key < g["key"]:
            length = float(np.linalg.norm(s.lattice.get_cartesian_coords(end - start)))
            g.update(key=key, start=start, end=end, length=length,
                     nodes=(u, v) if np.allclose(_wrap(a), start) else (v, u))
    order = sorted(groups, key=lambda g: (round(groups[g]["length"], _ROUND), groups[g]["key"]))
    relabel = {old: new for new, old in enumerate(order)}

    wyckoffs = _wyckoffs(mg)
    hops: list[Hop] = []
    for old in order:
        g = groups[old]
        iu, ev = g["nodes"]
        for limit in config.limits:
            hops.append(Hop(
                hop_id=_hop_id(s, ion, limit, g["length"], g["key"]),
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
            ))
    edges: list[Edge] = []
    for u, v, d in graph.edges(data=True):
        new = relabel[d["hop_label"]]
        d["hop_label"] = new  # keep the MigrationGraph consistent with our labels
        jimage = tuple(int(x) for x in d["to_jimage"])
        edges.append((int(u), int(v), jimage, new))  # type: ignore[arg-type]
    sym = mg.symm_structure
    spacegroup = (sym.spacegroup.int_symbol, int(sym.spacegroup.int_number))
    return HostPathways(structure=s, ion=ion, hops=hops, edges=edges, ion_sites=ion_sites,
                        spacegroup=spacegroup, config=config, cutoff_A=float(cutoff))


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


# --------------------------------------------------------------------------- supercells and bands
def _perp_widths(matrix: np.ndarray) -> np.ndarray:
    """Perpendicular widths (distances between opposite faces) of a cell, in Å."""
    vol = abs(np.linalg.det(matrix))
    return np.array([vol / np.linalg.norm(np.cross(matrix[(i + 1) % 3], matrix[(i + 2) % 3]))
                     for i in range(3)])


def _hop_cart_vector(structure: Structure, hop: Hop) -> np.ndarray:
    d = np.asarray(hop.esite_frac, dtype=float) - np.asarray(hop.isite_frac, dtype=float)
    return structure.lattice.get_cartesian_coords(d)


def _supercell_matrix(
    lattice: Lattice,
    hop_vector: np.ndarray,
    min_width: float,
) -> np.ndarray:
    """Smallest diagonal multiple of a basis of ``lattice`` whose widths reach ``min_width``.

    Bases tried: the cell and its LLL-reduced basis. The supercell also holds
    the hop as a minimum-image vector (every fractional component below one half), so that
    :meth:`Band.from_host` recovers it.
    """
    matrix = lattice.matrix
    bases = [np.eye(3, dtype=int), np.rint(lattice.lll_mapping).astype(int)]
    best: np.ndarray | None = None
    for basis in bases:
        if round(abs(np.linalg.det(basis))) < 1:
            continue
        widths = _perp_widths(basis @ matrix)
        n = np.maximum(1, np.ceil(min_width / widths - 1e-9)).astype(int)
        for _ in range(64):
            sc = np.diag(n) @ basis
            f = hop_vector @ np.linalg.inv(sc @ matrix)
            over = np.abs(f) >= 0.5 - 1e-6
            if not over.any():
                break
            n = n + over.astype(int)
        if best is None or abs(np.linalg.det(sc)) < abs(np.linalg.det(best)) - 0.5:
            best = sc
    assert best is not None
    return best


def _is_ion_site(site: Any, ion: str) -> bool:
    return site.species.num_atoms == 1 and site.species.reduced_formula == ion


def build_band(pathways: HostPathways, hop: Hop, config: PathwayConfig | None = None) -> Band:
    """The supercell band of one hop in its limit: host plus ``n_images`` linear images.

    The supercell is the smallest diagonal multiple (of the cell or its LLL basis) whose
    perpendicular widths reach ``config.min_width``. The host is the supercell without the
    migrating ion (vacancy limit: without the ion's start and end sites; dilute limit: without
    any working ion).

    Raises:
        BandTooLargeError: the band would exceed ``config.max_band_sites``.
        BandBuildError: the hop's end points are not working-ion sites of the structure.
    """
    config = config or pathways.config
    s = pathways.structure
    ion = hop.ion
    sc_mat = pathways.supercell_matrix(hop, config)
    size = pathways.band_size(hop, config)
    if size > config.max_band_sites:
        n_cells = round(abs(np.linalg.det(sc_mat)))
        raise BandTooLargeError(
            f"hop {hop.hop_id} ({hop.limit}, {hop.length_A:.3f} Å) in "
            f"{s.composition.reduced_formula}: reaching perpendicular widths of "
            f"{config.min_width} Å takes {n_cells} cells of {len(s)} sites, a band of {size} "
            f"sites > max_band_sites={config.max_band_sites}; raise max_band_sites or lower "
            "min_width"
        )
    sc = s.copy()
    sc.make_supercell(sc_mat)
    ion_idx = np.array([i for i, site in enumerate(sc) if _is_ion_site(site, ion)], dtype=int)
    if ion_idx.size == 0:
        raise BandBuildError(f"no {ion} site in the supercell")
    start_cart = s.lattice.get_cartesian_coords(np.asarray(hop.isite_frac, dtype=float))
    vec = _hop_cart_vector(s, hop)
    start = _wrap(sc.lattice.get_fractional_coords(start_cart))
    end = start + sc.lattice.get_fractional_coords(vec)
    i_start = _match_site(sc, ion_idx, start, "initial", hop)
    i_end = _match_site(sc, ion_idx, end, "final", hop)
    if i_start == i_end:
        raise BandBuildError(f"hop {hop.hop_id}: initial and final sites coincide in the supercell")
    remove = [i_start, i_end] if hop.limit == "vacancy" else ion_idx.tolist()
    sc.remove_sites(sorted(set(remove)))
    band = Band.from_host(sc, ion, start, end, n_images=config.n_images)
    if abs(band.hop_length - hop.length_A) > 1e-3:
        raise BandBuildError(
            f"hop {hop.hop_id}: band hop length {band.hop_length:.4f} Å differs from "
            f"{hop.length_A:.4f} Å (minimum image)"
        )
    band.meta.update(hop_id=hop.hop_id, limit=hop.limit, hop_label=hop.hop_label,
                     formula=s.composition.reduced_formula, supercell_matrix=sc_mat.tolist())
    return band


def _match_site(sc: Structure, ion_idx: np.ndarray, frac: np.ndarray, which: str, hop: Hop) -> int:
    """Index of the working-ion site of ``sc`` at ``frac`` (minimum image, 0.25 Å tolerance)."""
    d = sc.lattice.get_all_distances(frac[None, :], sc.frac_coords[ion_idx])[0]
    k = int(np.argmin(d))
    if d[k] > 0.25:
        raise BandBuildError(
            f"hop {hop.hop_id}: no {hop.ion} site at the {which} position "
            f"{np.round(frac, 4).tolist()} (nearest {d[k]:.3f} Å away)"
        )
    return int(ion_idx[k])


# --------------------------------------------------------------------------- IDPP export
def idpp_images(
    band: Band,
    n_images: int | None = None,
    moving: list[str] | None = None,
    **run_kwargs: Any,
) -> list[Structure]:
    """IDPP images of a band's hop, for export to NEB codes.

    Args:
        band: the band; its first and last images give the end points.
        n_images: number of structures returned, end points included (default: the band's).
        moving: elements allowed to move (default: all atoms).
        **run_kwargs: passed to ``IDPPSolver.run`` (``maxiter``, ``tol``, ``gtol``...).

    Returns:
        ``n_images`` structures, migrating ion first, host sites after, in the band's order.

    Note:
        IDPP is O(n_images x sites^2) in pure Python: seconds for a 200-site band.
    """
    from pymatgen.analysis.diffusion.neb.pathfinder import IDPPSolver

    n = band.n_images if n_images is None else int(n_images)
    if n < 3:
        raise BandBuildError("IDPP needs at least 3 images (end points included)")
    initial, final = band.endpoint(0), band.endpoint(-1)
    images = initial.interpolate(final, nimages=n - 1, interpolate_lattices=False, pbc=True,
                                 autosort_tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return IDPPSolver(list(images)).run(species=moving, **run_kwargs)
