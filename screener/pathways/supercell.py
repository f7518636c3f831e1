"""Supercells of a hop's band: the smallest cell whose widths reach ``min_width`` and holds the hop."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure

from screener.pathways.config import WRAP_TOL
from screener.pathways.hop import Hop


def perp_widths(matrix: np.ndarray) -> np.ndarray:
    """Perpendicular widths (distances between opposite faces) of a cell, in Å."""
    vol = abs(np.linalg.det(matrix))
    return np.array([vol / np.linalg.norm(np.cross(matrix[(i + 1) % 3], matrix[(i + 2) % 3]))
                     for i in range(3)])


def supercell_matrix(
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
        widths = perp_widths(basis @ matrix)
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


def hop_vector(structure: Structure, hop: Hop) -> np.ndarray:
    d = np.asarray(hop.esite_frac, dtype=float) - np.asarray(hop.isite_frac, dtype=float)
    return structure.lattice.get_cartesian_coords(d)


def wrap_frac(x: np.ndarray) -> np.ndarray:
    """Fractional coordinates wrapped into [-1e-4, 1 - 1e-4): a site at -1e-6 stays near 0."""
    y = np.asarray(x, dtype=float) % 1.0
    return np.where(y >= 1.0 - WRAP_TOL, y - 1.0, y)
