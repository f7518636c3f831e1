"""Checks of an input structure before its hops are searched: order, contacts, working ion, cell size."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pymatgen.core import Element, Structure

from screener.core.errors import (
    BandTooLargeError,
    CloseContactError,
    DisorderedStructureError,
    NoHostFrameworkError,
    NoWorkingIonError,
    StructureReadError,
)
from screener.pathways.config import PRIM_TOL, PathwayConfig

log = logging.getLogger(__name__)


def clean_structure(structure: Structure) -> Structure:
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
    log.info("ordered %s as %s", structure.composition.formula, ordered.composition.formula)
    return clean_structure(ordered)


def check_structure(
    structure: Structure,
    ion: str,
    min_distance: float = 0.5,
    order_disordered: bool = False,
    require_ion: bool = True,
) -> Structure:
    """Validate a host structure and return a cleaned copy.

    Args:
        structure: the input structure (not modified).
        ion: element symbol of the working ion.
        min_distance: smallest allowed interatomic distance in Å.
        order_disordered: order a disordered structure instead of refusing it.
        require_ion: refuse a structure without ``ion`` (False for empty frameworks, whose
            void sites receive the ion).

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
    s = clean_structure(structure)
    elements = {e.symbol for e in s.composition.elements}
    if el.symbol not in elements and require_ion:
        raise NoWorkingIonError(
            f"{s.composition.reduced_formula} holds no {el.symbol}; to screen it as an empty framework "
            f"(the ion inserted at its voids), use --sites voids")
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
        if require_ion and el.symbol not in {e.symbol for e in s.composition.elements}:
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


def is_ion_site(site: Any, ion: str) -> bool:
    return site.species.num_atoms == 1 and site.species.reduced_formula == ion


def _smallest_band(n_sites: int, n_ion: float, config: PathwayConfig) -> int:
    """Fewest sites any band of a cell can have: one cell, the ion's sites removed, the images."""
    removed = {"vacancy": min(2.0, n_ion), "dilute": n_ion}
    return min(round(n_sites - removed[lim]) for lim in config.limits) + config.n_images


def check_cell_size(s: Structure, ion: str, config: PathwayConfig) -> None:
    """Refuse, before any slow symmetry analysis, a cell whose smallest band is over the cap.

    A cell over the cap may be a supercell of a small one; spglib's primitive search (C, about a
    second for 6,000 sites) tells, where pymatgen's primitive search and the migration graph
    would take minutes to hours.

    Raises:
        BandTooLargeError: even a band of one primitive cell exceeds ``config.max_band_sites``.
    """
    n = len(s)
    n_ion = sum(1 for site in s if is_ion_site(site, ion))
    if _smallest_band(n, n_ion, config) <= config.max_band_sites:
        return
    n_prim = n
    if config.primitive:
        import spglib

        cell = (s.lattice.matrix, s.frac_coords, [site.specie.Z for site in s])
        try:
            found = spglib.find_primitive(cell, symprec=PRIM_TOL)
            if found is not None:
                n_prim = len(found[2])
        except Exception as exc:  # noqa: BLE001 - the size check must not fail on its own
            log.debug("spglib primitive search failed: %s", exc)
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
