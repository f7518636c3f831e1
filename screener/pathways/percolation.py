"""Percolation of a periodic hop network: at which barrier do the open hops span the crystal?

The network is the periodic quotient graph of all symmetry-equivalent hops: one node per
working-ion site of the unit cell, one edge ``(u, v, to_jimage, hop_label)`` per hop from site
``u`` in cell 0 to site ``v`` in cell ``to_jimage``. A connected component of the open edges
percolates in *d* dimensions when the translations of its cycles span a rank-*d* lattice: walk the
component assigning each node a cell offset; every edge that closes a cycle adds the translation
``offset[u] + to_jimage - offset[v]``.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

#: A periodic graph edge: (u, v, to_jimage, hop_label).
Edge = tuple[int, int, tuple[int, int, int], int]


DIMENSION_KEYS = ("1D", "2D", "3D")


def _as_edges(edges: Iterable[Sequence]) -> list[tuple[int, int, tuple[int, int, int], int]]:
    out = []
    for e in edges:
        if len(e) != 4:
            raise ValueError(f"an edge is (u, v, to_jimage, hop_label), got {e!r}")
        u, v, jimage, label = e
        j = tuple(int(x) for x in np.asarray(jimage, dtype=int).reshape(3))
        if int(u) == int(v) and not any(j):
            continue  # a loop onto the same site in the same cell: no hop
        out.append((int(u), int(v), j, label))
    return out


def component_translations(edges: Iterable[Sequence]) -> list[np.ndarray]:
    """Basis of the cycle translations of each connected component.

    Args:
        edges: ``(u, v, to_jimage, hop_label)`` edges (labels are ignored here).

    Returns:
        For each component (nodes without edges are left out), an integer array ``(rank, 3)``
        of independent translations along which it percolates (``rank`` 0 to 3).
    """
    return _translations(_as_edges(edges))


def _translations(edges: list[tuple[int, int, tuple[int, int, int], Any]]) -> list[np.ndarray]:
    """:func:`component_translations` of edges already through :func:`_as_edges`."""
    adj: dict[int, list[tuple[int, tuple[int, int, int]]]] = defaultdict(list)
    for u, v, j, _ in edges:
        adj[u].append((v, j))
        adj[v].append((u, (-j[0], -j[1], -j[2])))
    offset: dict[int, tuple[int, int, int]] = {}
    result = []
    for root in sorted(adj):
        if root in offset:
            continue
        offset[root] = (0, 0, 0)
        basis: list[tuple[int, int, int]] = []
        queue = deque([root])
        while queue:
            u = queue.popleft()
            ou = offset[u]
            for v, j in adj[u]:
                target = (ou[0] + j[0], ou[1] + j[1], ou[2] + j[2])
                if v not in offset:
                    offset[v] = target
                    queue.append(v)
                    continue
                if len(basis) == 3:
                    continue
                ov = offset[v]
                t = (target[0] - ov[0], target[1] - ov[1], target[2] - ov[2])
                if _independent(basis, t):
                    basis.append(t)
        result.append(np.array(basis, dtype=int).reshape(-1, 3))
    return result


def _cross(a: Sequence[int], b: Sequence[int]) -> tuple[int, int, int]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _independent(basis: list[tuple[int, int, int]], t: tuple[int, int, int]) -> bool:
    """Whether integer ``t`` is linearly independent of the independent integer ``basis`` (exact)."""
    if len(basis) == 0:
        return any(t)
    if len(basis) == 1:
        return any(_cross(basis[0], t))
    if len(basis) == 2:
        n = _cross(basis[0], basis[1])
        return n[0] * t[0] + n[1] * t[1] + n[2] * t[2] != 0
    return False


def percolation_dimension(edges: Iterable[Sequence]) -> int:
    """Largest number of dimensions (0-3) in which one component of the network percolates."""
    return _dimension(_as_edges(edges))


def _dimension(edges: list[tuple[int, int, tuple[int, int, int], Any]]) -> int:
    return max((len(b) for b in _translations(edges)), default=0)


def percolation_barriers(
    edges: Iterable[Sequence], barrier_by_label: Mapping[int, float]
) -> dict[str, float]:
    """The smallest barrier at which the hops at or below it percolate in 1, 2 and 3 dimensions.

    Args:
        edges: the periodic graph of all equivalent hops, ``(u, v, to_jimage, hop_label)``.
        barrier_by_label: barrier (eV) of each distinct hop label. Edges whose label has no
            barrier, or a NaN one, never open.

    Returns:
        ``{"1D": x, "2D": y, "3D": z}``; ``math.inf`` where the network never percolates.
    """
    all_edges = _as_edges(edges)
    barrier: dict = {}
    for label, b in barrier_by_label.items():
        b = float(b)
        if not math.isnan(b):
            barrier[label] = b
    thresholds = sorted({barrier[e[3]] for e in all_edges if e[3] in barrier})
    result = dict.fromkeys(DIMENSION_KEYS, math.inf)
    reached = 0
    for t in thresholds:
        open_edges = [e for e in all_edges if e[3] in barrier and barrier[e[3]] <= t]
        dim = _dimension(open_edges)
        for d in range(reached + 1, dim + 1):
            result[DIMENSION_KEYS[d - 1]] = t
        reached = max(reached, dim)
        if reached == 3:
            break
    return result


#: Draws of the hop barriers behind :func:`percolation_probabilities`.
N_SAMPLES = 400


def percolation_probabilities(
    edges: Iterable[Sequence], barrier_by_label: Mapping[int, float | Sequence[float]],
    sigma_by_label: Mapping[int, float | Sequence[float]], threshold: float, n_samples: int = N_SAMPLES,
    seed: int = 0,
) -> dict[str, float]:
    """Probability that the hops open below ``threshold`` percolate in at least 1, 2 and 3 dimensions.

    Each distinct hop's barrier is drawn from a normal distribution with its predicted barrier
    and uncertainty (independently per hop label); a draw opens the hops below ``threshold``,
    as ``passes`` does for the point estimates. A hop priced 0.9 ± 1.1 eV is open in ~40 % of
    the draws at 0.65 eV: it no longer makes a crystal 2D on its own the way its point estimate
    would. A hop with a barrier per limit (charged and discharged) is open only where it is open
    in every limit; its limits share one standardised error per draw (one model prices both, so
    their errors go together), which at zero error gives the dearer limit, as
    :func:`percolation_barriers` on the conservative barriers does.

    Args:
        edges: the periodic graph of all equivalent hops, ``(u, v, to_jimage, hop_label)``.
        barrier_by_label: predicted barrier (eV) of each hop label, or one per limit (a NaN in
            any limit: never open).
        sigma_by_label: its uncertainty (eV), of the same shape (NaN or missing counts as 0).
        threshold: the barrier (eV) below which a hop is open.
        n_samples: draws.
        seed: seeds the draws (the result is reproducible).

    Returns:
        ``{"1D": p1, "2D": p2, "3D": p3}`` with p1 >= p2 >= p3.
    """
    all_edges = _as_edges(edges)
    mus: dict = {}
    sds: dict = {}
    for lab in {e[3] for e in all_edges if e[3] in barrier_by_label}:
        mu = np.atleast_1d(np.asarray(barrier_by_label[lab], dtype=float))
        if mu.size == 0 or np.isnan(mu).any():
            continue
        sd = np.atleast_1d(np.asarray(sigma_by_label.get(lab, 0.0), dtype=float))
        mus[lab], sds[lab] = mu, np.broadcast_to(np.where(np.isfinite(sd), sd, 0.0), mu.shape)
    labels = sorted(mus, key=str)
    counts = np.zeros(4)
    if not labels:
        return dict.fromkeys(DIMENSION_KEYS, 0.0)
    z = np.random.default_rng(seed).standard_normal((n_samples, len(labels)))
    draws = np.column_stack([(mus[lab][None, :] + z[:, j, None] * sds[lab][None, :] < threshold).all(axis=1)
                             for j, lab in enumerate(labels)])
    memo: dict[bytes, int] = {}
    for row in draws:
        key = row.tobytes()
        if key not in memo:
            open_labels = {lab for lab, o in zip(labels, row) if o}
            memo[key] = _dimension([e for e in all_edges if e[3] in open_labels])
        counts[memo[key]] += 1
    at_least = counts[::-1].cumsum()[::-1] / n_samples
    return {"1D": float(at_least[1]), "2D": float(at_least[2]), "3D": float(at_least[3])}
