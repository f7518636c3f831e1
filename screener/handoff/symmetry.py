"""Symmetry of a hop: the final end point and half the NEB images as images of the others.

Most hops join two sites of one symmetry orbit. When an operation g of the crystal with both
sites filled swaps the two sites, it carries the initial end point (ion on the first site, the
second empty) onto the final one, so the final end point's relaxation is the image of the
initial one's under g: one relaxation instead of two. The image is still checked by a
relaxation (converged at its first evaluation, unless the potential breaks the symmetry).

The band between two such end points is symmetric too: image k and image n-1-k are partners
under g (the middle image its own partner). :class:`MirroredImages` evaluates one image of each
pair and maps the energy and forces onto the other, but only where that image really is the
partner's image (to :data:`PARTNER_TOL_A`), so a band that loses the symmetry is evaluated in full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms

#: spglib's tolerance (Å) for the symmetry of the filled crystal.
SYMPREC_A = 0.01

#: Largest mismatch (Å) between an atom's image and its partner in the final end point.
MATCH_TOL_A = 0.05


def _wrap(d: np.ndarray) -> np.ndarray:
    return d - np.round(d)


def swap_mapping(initial: Atoms, final: Atoms, symprec: float = SYMPREC_A,
                 tol: float = MATCH_TOL_A) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A symmetry operation of the filled crystal that carries ``initial`` onto ``final``.

    Args:
        initial: host plus the ion (atom 0) on its initial site.
        final: the same atoms, the ion on its final site (same cell, same order).
        symprec: spglib's tolerance (Å).
        tol: largest mismatch (Å) of an atom's image.

    Returns:
        ``(rotation, translation, perm)`` in fractional coordinates, atom ``j`` of ``initial``
        going to atom ``perm[j]`` of ``final``; ``None`` when no operation swaps the two sites.
    """
    import spglib

    if len(initial) != len(final) or not np.allclose(initial.cell.array, final.cell.array, atol=1e-6):
        return None
    cell = initial.cell.array
    fi = initial.get_scaled_positions(wrap=True)
    ff = final.get_scaled_positions(wrap=True)
    zi, zf = initial.get_atomic_numbers(), final.get_atomic_numbers()
    filled = np.vstack([fi, ff[:1]])
    ops = spglib.get_symmetry((cell, filled, np.append(zi, zf[0])), symprec=symprec)
    if not ops:
        return None

    def close(d: np.ndarray) -> np.ndarray:
        return np.linalg.norm(_wrap(d) @ cell, axis=-1) < tol

    for rot, trans in zip(ops["rotations"], ops["translations"]):
        if not (close(rot @ fi[0] + trans - ff[0]) and close(rot @ ff[0] + trans - fi[0])):
            continue
        images = fi @ rot.T + trans
        perm = np.full(len(fi), -1)
        taken = np.zeros(len(ff), dtype=bool)
        for j, y in enumerate(images):
            hits = np.flatnonzero(close(y[None, :] - ff) & (zf == zi[j]) & ~taken)
            if len(hits) != 1:
                break
            perm[j] = hits[0]
            taken[hits[0]] = True
        else:
            return rot, trans, perm
    return None


def carry(swap: tuple[np.ndarray, np.ndarray, np.ndarray], atoms: Atoms, near: Atoms) -> Atoms:
    """``atoms`` carried by the operation of :func:`swap_mapping`, each atom the periodic image nearest ``near``'s.

    Args:
        swap: ``(rotation, translation, perm)`` from :func:`swap_mapping`.
        atoms: a configuration of the initial end point's atoms (any relaxation of it).
        near: a configuration in the final end point's atom order (its atoms are copied).
    """
    rot, trans, perm = swap
    ref = near.get_scaled_positions(wrap=False)
    frac = np.empty_like(ref)
    frac[perm] = atoms.get_scaled_positions(wrap=False) @ rot.T + trans
    out = near.copy()
    out.set_scaled_positions(ref + _wrap(frac - ref))
    return out


def symmetrize_band(swap: tuple[np.ndarray, np.ndarray, np.ndarray], images: list[Atoms]) -> list[Atoms]:
    """Make a band between symmetric end points exactly symmetric (IDPP leaves it so only to ~1e-3 Å).

    Image ``n-1-k`` becomes the image of image ``k`` under the swap; the middle image (odd ``n``)
    the mean of itself and its own image. The images are changed in place and returned.
    """
    n = len(images)
    for k in range(1, n // 2):
        images[n - 1 - k].positions = carry(swap, images[k], images[n - 1 - k]).positions
    if n % 2:
        c = images[n // 2]
        c.positions = 0.5 * (c.positions + carry(swap, c, c).positions)
    return images


def cartesian_rotation(swap: tuple[np.ndarray, np.ndarray, np.ndarray], cell: np.ndarray) -> np.ndarray:
    """The operation's rotation acting on Cartesian row vectors (``v' = v @ rot``) of ``cell``'s crystal."""
    return np.linalg.inv(cell) @ swap[0].T @ cell


def same_under_swap(swap: tuple[np.ndarray, np.ndarray, np.ndarray], a: Atoms, b: Atoms,
                    energy_tol: float = 1e-3, force_tol: float = 0.01) -> bool:
    """Whether ``b``'s energy and forces are those of ``a`` carried by the operation.

    Both carry a calculator with their results (e.g. relaxed end points). A potential that does
    not respect the symmetry, or a cell symmetric only to spglib's tolerance, fails here.
    """
    rot = cartesian_rotation(swap, a.cell.array)
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6):
        return False
    if abs(float(a.get_potential_energy()) - float(b.get_potential_energy())) > energy_tol:
        return False
    mapped = np.empty_like(a.get_forces())
    mapped[swap[2]] = a.get_forces() @ rot
    return bool(np.abs(mapped - b.get_forces()).max() <= force_tol)


#: An image is its partner's image under the swap when no atom is further off than this (Å).
PARTNER_TOL_A = 1e-4


class MirroredImages:
    """Evaluates the moving images of a symmetric band, one image of each partner pair.

    Give it to :func:`~screener.handoff.batching.batched_calculators` with the same list of
    moving images: each call evaluates the first half and the middle image (through
    ``evaluator``, in one call when ``batch``) and, for each image of the second half that is
    its partner's image under the swap, maps the partner's energy and forces; any other image is
    evaluated itself.

    Attributes:
        evaluations: images evaluated by ``evaluator``.
        mirrored: images whose results were mapped from their partner.
    """

    batched = True  # it needs every moving image of a step in one call

    def __init__(self, evaluator: Any, swap: tuple[np.ndarray, np.ndarray, np.ndarray], band: list[Atoms],
                 batch: bool = False):
        self.evaluator = evaluator
        self.swap = swap
        self.band = band
        self.batch = batch
        self.rot_cart = cartesian_rotation(swap, band[0].cell.array)
        self.evaluations = 0
        self.mirrored = 0

    def _is_partner_image(self, k: int, p: int) -> bool:
        image = carry(self.swap, self.band[p], self.band[k])
        d = image.positions - self.band[k].positions
        return bool(np.abs(d).max() < PARTNER_TOL_A)

    def evaluate(self, images: list[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        """See :class:`~screener.handoff.batching.ImageEvaluator`."""
        n = len(self.band)
        index = [next(i for i, b in enumerate(self.band) if b is im) for im in images]
        asked = set(index)
        mirror = {k: n - 1 - k for k in index
                  if n - 1 - k < k and n - 1 - k in asked and self._is_partner_image(k, n - 1 - k)}
        direct = [k for k in index if k not in mirror]
        if self.batch:
            e, f = self.evaluator.evaluate([self.band[k] for k in direct])
        else:
            pairs = [self.evaluator.evaluate([self.band[k]]) for k in direct]
            e, f = [x[0][0] for x in pairs], [x[1][0] for x in pairs]
        self.evaluations += len(direct)
        self.mirrored += len(mirror)
        energy = dict(zip(direct, (float(x) for x in e)))
        forces = dict(zip(direct, (np.asarray(x, dtype=float) for x in f)))
        perm = self.swap[2]
        for k, p in mirror.items():
            fk = np.empty_like(forces[p])
            fk[perm] = forces[p] @ self.rot_cart
            energy[k], forces[k] = energy[p], fk
        return np.array([energy[k] for k in index]), [forces[k] for k in index]
