"""Percolation of periodic hop networks: hand-made graphs and known hosts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from screener.pathways.config import PathwayConfig
from screener.pathways.percolation import (
    component_translations,
    percolation_barriers,
    percolation_dimension,
    percolation_probabilities,
)
from screener.pathways.search import find_pathways

INF = math.inf
X, Y, Z, O = (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0)


# --------------------------------------------------------------------------- hand-made graphs
def test_chain_of_one_site_is_1d():
    edges = [(0, 0, X, 0)]
    assert percolation_dimension(edges) == 1
    assert percolation_barriers(edges, {0: 0.5}) == {"1D": 0.5, "2D": INF, "3D": INF}


def test_chain_of_two_sites_opens_at_its_dearest_hop():
    edges = [(0, 1, O, 0), (1, 0, X, 1)]
    assert percolation_barriers(edges, {0: 0.2, 1: 0.7}) == {"1D": 0.7, "2D": INF, "3D": INF}


def test_zigzag_chain_is_1d_not_2d():
    edges = [(0, 1, O, 0), (1, 0, Y, 0)]
    assert percolation_dimension(edges) == 1
    (basis,) = component_translations(edges)
    assert sorted(np.abs(basis[0]).tolist()) == [0, 0, 1] and abs(basis[0][1]) == 1


def test_square_net_is_2d():
    edges = [(0, 0, X, 0), (0, 0, Y, 1)]
    assert percolation_dimension(edges) == 2
    assert percolation_barriers(edges, {0: 0.3, 1: 0.6}) == {"1D": 0.3, "2D": 0.6, "3D": INF}


def test_simple_cubic_is_3d():
    edges = [(0, 0, X, 0), (0, 0, Y, 0), (0, 0, Z, 0)]
    assert percolation_dimension(edges) == 3
    assert percolation_barriers(edges, {0: 0.4}) == {"1D": 0.4, "2D": 0.4, "3D": 0.4}


def test_diamond_net_is_3d():
    edges = [(0, 1, O, 0), (0, 1, (-1, 0, 0), 0), (0, 1, (0, -1, 0), 0), (0, 1, (0, 0, -1), 0)]
    assert percolation_dimension(edges) == 3


def test_dimer_never_percolates():
    edges = [(0, 1, O, 0)]
    assert percolation_dimension(edges) == 0
    assert percolation_barriers(edges, {0: 0.1}) == {"1D": INF, "2D": INF, "3D": INF}


def test_empty_graph_never_percolates():
    assert percolation_dimension([]) == 0
    assert percolation_barriers([], {}) == {"1D": INF, "2D": INF, "3D": INF}


def test_parallel_and_long_translations_do_not_raise_the_rank():
    assert percolation_dimension([(0, 0, X, 0), (0, 0, (2, 0, 0), 0)]) == 1
    assert percolation_dimension([(0, 0, (2, 0, 0), 0)]) == 1  # percolates, with period 2


def test_translations_span_what_every_cycle_spans_on_random_networks():
    # The exact integer independence test against floating-point rank of all cycle translations
    # (every edge closes a cycle with the walk's offsets), component by component.
    from collections import defaultdict

    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(1, 5))
        edges = [(int(rng.integers(n)), int(rng.integers(n)), tuple(int(x) for x in rng.integers(-2, 3, 3)), 0)
                 for _ in range(int(rng.integers(1, 7)))]
        got = sorted(len(b) for b in component_translations(edges))
        adj = defaultdict(list)
        for u, v, j, _ in edges:
            if u == v and not any(j):
                continue
            adj[u].append((v, np.array(j)))
            adj[v].append((u, -np.array(j)))
        seen, want = set(), []
        for root in sorted(adj):
            if root in seen:
                continue
            offset, stack = {root: np.zeros(3, dtype=int)}, [root]
            while stack:
                u = stack.pop()
                for v, j in adj[u]:
                    if v not in offset:
                        offset[v] = offset[u] + j
                        stack.append(v)
            seen |= set(offset)
            ts = [offset[u] + j - offset[v] for u in offset for v, j in adj[u]]
            want.append(int(np.linalg.matrix_rank(np.array(ts, dtype=float))) if ts else 0)
        assert got == sorted(want), edges


def test_max_over_components():
    # component {0}: square net; component {1, 2}: a chain along z
    edges = [(0, 0, X, 0), (0, 0, Y, 0), (1, 2, O, 1), (2, 1, Z, 1)]
    assert percolation_dimension(edges) == 2
    assert len(component_translations(edges)) == 2
    assert percolation_barriers(edges, {0: 0.9, 1: 0.2}) == {"1D": 0.2, "2D": 0.9, "3D": INF}


def test_reversed_edges_give_the_same_result():
    edges = [(0, 1, O, 0), (0, 1, (-1, 0, 0), 1), (0, 1, (0, -1, 0), 2)]
    rev = [(v, u, tuple(-x for x in j), lab) for u, v, j, lab in edges]
    b = {0: 0.1, 1: 0.2, 2: 0.3}
    assert percolation_barriers(edges, b) == percolation_barriers(rev, b) == {
        "1D": 0.2, "2D": 0.3, "3D": INF}


def test_threshold_is_inclusive_and_unknown_or_nan_never_open():
    edges = [(0, 0, X, 0), (0, 0, Y, 1), (0, 0, Z, 2)]
    assert percolation_barriers(edges, {0: 0.5, 1: 0.5}) == {"1D": 0.5, "2D": 0.5, "3D": INF}
    assert percolation_barriers(edges, {0: 0.5, 1: float("nan"), 2: 0.7}) == {
        "1D": 0.5, "2D": 0.7, "3D": INF}


def test_self_loop_in_the_same_cell_is_ignored_and_bad_edges_raise():
    assert percolation_dimension([(0, 0, O, 0)]) == 0
    with pytest.raises(ValueError):
        percolation_dimension([(0, 1, O)])


# --------------------------------------------------------------------------- known hosts
def _by_length(pw, cheap=None):
    """Barrier per label: equal (1.0) for all, or 0.3 for ``cheap`` labels."""
    labels = {h.hop_label for h in pw.hops}
    return {lab: (0.3 if cheap is not None and lab in cheap else 1.0) for lab in labels}


def test_lifepo4_percolates_1d_along_b(lifepo4):
    pw = find_pathways(lifepo4, "Li")
    short = min(pw.hops, key=lambda h: h.length_A).hop_label
    barriers = _by_length(pw, cheap={short})
    barriers[max(barriers)] = 1.2
    assert percolation_barriers(pw.edges, barriers) == {"1D": 0.3, "2D": 1.2, "3D": INF}
    open_edges = [e for e in pw.edges if e[3] == short]
    (basis, *_) = component_translations(open_edges)
    assert len(basis) == 1
    # the channel runs along b (6.07 Å, the second vector in this setting)
    assert np.abs(basis[0]).tolist() == [0, 1, 0]
    assert pw.structure.lattice.abc[1] == pytest.approx(6.07, abs=0.01)


def test_mgmn2o4_spinel_percolates_3d(mgmn2o4):
    pw = find_pathways(mgmn2o4, "Mg")
    assert percolation_dimension(pw.edges) == 3
    assert percolation_barriers(pw.edges, _by_length(pw)) == {"1D": 1.0, "2D": 1.0, "3D": 1.0}


def test_licoo2_percolates_2d_in_the_layers(licoo2):
    pw = find_pathways(licoo2, "Li", PathwayConfig(cutoff=4.0))
    assert percolation_dimension(pw.edges) == 2
    (basis,) = component_translations(pw.edges)
    cart = basis @ pw.structure.lattice.matrix
    assert np.allclose(cart[:, 2], 0.0, atol=1e-6)  # in the ab plane: the Li layer
    # with all hops up to 5 Å and the in-plane 2.82 Å hop cheap: 2D, then 3D only through the
    # long (4.96 Å) hop across the CoO2 slab
    pw5 = find_pathways(licoo2, "Li")
    short = min(pw5.hops, key=lambda h: h.length_A).hop_label
    res = percolation_barriers(pw5.edges, _by_length(pw5, cheap={short}))
    assert res == {"1D": 0.3, "2D": 0.3, "3D": 1.0}


def test_li3v2po43_percolates_3d(li3v2po43):
    pw = find_pathways(li3v2po43, "Li")
    assert percolation_barriers(pw.edges, _by_length(pw)) == {"1D": 1.0, "2D": 1.0, "3D": 1.0}
    by_length = {h.hop_label: h.length_A for h in pw.hops}
    res = percolation_barriers(pw.edges, by_length)
    assert res["1D"] <= res["2D"] <= res["3D"] < 3.5


def test_host_pathways_percolation_by_hop_id(lifepo4):
    pw = find_pathways(lifepo4, "Li")
    barriers = {h.hop_id: (0.3 if h.length_A < 4 else 0.9) + (0.1 if h.limit == "dilute" else 0)
                for h in pw.hops}
    res = pw.percolation(barriers)
    assert res["vacancy"] == {"1D": 0.3, "2D": 0.9, "3D": INF}
    assert res["dilute"] == pytest.approx({"1D": 0.4, "2D": 1.0, "3D": INF})


# --------------------------------------------------------------------------- with uncertainty
def test_an_uncertain_hop_opens_in_its_share_of_draws():
    """Square net: a sure 0.3 eV hop along x, an unsure 0.9 +- 1.1 eV hop along y (olivine-like)."""
    edges = [(0, 0, X, 0), (0, 0, Y, 1)]
    p = percolation_probabilities(edges, {0: 0.3, 1: 0.9}, {0: 0.05, 1: 1.1}, threshold=0.65, n_samples=4000)
    assert p["1D"] == pytest.approx(1.0, abs=1e-3)
    assert p["2D"] == pytest.approx(0.41, abs=0.03)  # Phi((0.65 - 0.9) / 1.1)
    assert p["3D"] == 0.0
    # without uncertainty the point estimates decide
    sure = percolation_probabilities(edges, {0: 0.3, 1: 0.6}, {}, threshold=0.65)
    assert sure == {"1D": 1.0, "2D": 1.0, "3D": 0.0}


def test_probabilities_are_reproducible_and_ordered():
    edges = [(0, 0, X, 0), (0, 0, Y, 1), (0, 0, Z, 2)]
    args = ({0: 0.5, 1: 0.6, 2: 0.7}, {0: 0.2, 1: 0.2, 2: 0.2}, 0.65)
    a, b = percolation_probabilities(edges, *args), percolation_probabilities(edges, *args)
    assert a == b and a["1D"] >= a["2D"] >= a["3D"] > 0
    assert percolation_probabilities(edges, {0: math.nan}, {}, 0.65) == {"1D": 0.0, "2D": 0.0, "3D": 0.0}


def test_a_hop_is_open_only_where_every_limit_is_open():
    edges = [(0, 0, X, 0), (0, 0, Y, 1)]
    # hop 1 is cheap when charged and dear when discharged: the dearer limit closes it
    p = percolation_probabilities(edges, {0: [0.3], 1: [0.2, 0.9]}, {0: [0.0], 1: [0.0, 0.0]}, threshold=0.65)
    assert p == {"1D": 1.0, "2D": 0.0, "3D": 0.0}
    # one error per hop shared by its limits: P(open) = P(0.9 + 1.1 z < 0.65) ~ Phi(-0.227) = 0.41
    # (independent errors per limit would give 0.41^2 = 0.17)
    p = percolation_probabilities(edges, {0: [0.3], 1: [0.9, 0.9]}, {0: [0.05], 1: [1.1, 1.1]},
                                  threshold=0.65, n_samples=4000)
    assert p["2D"] == pytest.approx(0.41, abs=0.03)
    # a barrier that is NaN in one limit never opens
    assert percolation_probabilities(edges, {0: [0.3], 1: [0.2, math.nan]}, {}, 0.65)["2D"] == 0.0


def test_a_barrier_at_the_threshold_is_closed_as_passes_says():
    edges = [(0, 0, X, 0)]
    assert percolation_probabilities(edges, {0: 0.65}, {}, 0.65)["1D"] == 0.0
    assert percolation_probabilities(edges, {0: 0.6499}, {}, 0.65)["1D"] == 1.0
