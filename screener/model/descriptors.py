"""Hand-made, physically motivated descriptors of a migration band.

:func:`band_features` turns one :class:`~screener.core.band.Band` into a flat mapping of 84 floats:

* the migrating ion (atomic number, mass, charge, Shannon radius, electronegativity) and the hop
  length;
* the local environment of the ion at each of the band's images (distances to the nearest host
  atoms, anions and cations, anion coordination, ``sum 1/r`` over nearby cations and anions),
  summarised over the images as the end-point value (mean of the first and last image), the
  midpoint value, the change midpoint minus end points (the "bottleneck" narrowing), and for the
  main distances the extremum over the images;
* the bottleneck of the straight path: the smallest distance from the segment joining the end
  points to any host atom, anion or cation;
* the nearest other working ion (same element as the migrating ion) in the host;
* host chemistry: volume and mass density, anion make-up, electronegativity statistics;
* (version 2) the bond-valence, electrostatic and steric profile of the hop along a path allowed
  to bend around the host (:mod:`screener.model.profile`);
* (version 3) the framework the ion moves through: how many anions coordinate the host's other
  cations (tetrahedral polyanion centres and chains, octahedral layers and spinels, larger
  cages), as their mean and the shares at four, six and seven or more, how many of the host's
  atoms are such cations, and how their polyhedra connect (edge- or face- against corner-sharing
  neighbours).

Anions are guessed simply: the most electronegative host element is always an anion, and any other
host element among O, S, Se, Te, F, Cl, Br, I, N whose Pauling electronegativity is within 0.8 of
the most electronegative one is an anion too (so S in sulphates and P in phosphates count as
cations, S next to Cl in argyrodites as an anion). Every other host element is a cation, the
working ions of the host included.

Nothing here uses a structural class, a formula label or any tabulated column: the features are a
pure function of the band, so they are computable for any new band.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
from pymatgen.core import Element
from pymatgen.optimization.neighbors import find_points_in_spheres

from screener.core.band import Band
from screener.core.chemistry import anion_elements
from screener.model.profile import PROFILE_NAMES, bond_valence_r0, path_profile

FEATURE_VERSION = 3


#: Framework descriptors (version 3), see :func:`_framework`.
FRAMEWORK_NAMES: tuple[str, ...] = ("fw_cn_mean", "fw_frac_cn4", "fw_frac_cn6", "fw_frac_cn7", "fw_cation_frac",
                                     "fw_edge_neighbours", "fw_corner_neighbours")

#: Radius (Å) within which a framework cation's anions are counted.
FRAMEWORK_RADIUS = 3.3


#: Radius (Å) of the ``sum 1/r`` electrostatic-like terms.
COULOMB_CUTOFF = 6.0


#: Fixed radius (Å) of the coordination count ``cn_host_3A``.
CN_RADIUS = 3.0


#: An anion within this factor of the nearest anion distance counts in ``cn_anion``.
CN_FACTOR = 1.2


#: A host site of the ion's own element this close (Å) to an end-point image is the vacated or
#: target site listed twice; it is left out.
DUPLICATE_TOL = 0.5


#: Largest neighbour-search radius (Å); distances beyond it are reported as this value.
MAX_RADIUS = 12.0


_HALIDES = frozenset({"Cl", "Br", "I"})


_AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


# Per-image quantities and how they are summarised over the images.
_IMAGE_QUANTITIES: tuple[str, ...] = (
    "d_host1",
    "d_host_mean4",
    "d_anion1",
    "d_anion_mean4",
    "d_cation1",
    "cn_anion",
    "cn_host_3A",
    "invr_cation",
    "invr_anion",
)


# The extremum over images that marks the bottleneck: min for distances, max for repulsion.
_EXTREMA: dict[str, str] = {
    "d_host1": "min",
    "d_anion1": "min",
    "d_cation1": "min",
    "invr_cation": "max",
}


FEATURE_NAMES: tuple[str, ...] = (
    "ion_Z",
    "ion_mass",
    "ion_charge",
    "ion_radius",
    "ion_X",
    "hop_length",
    *[f"{q}_{s}" for q in _IMAGE_QUANTITIES for s in ("end", "mid", "delta")],
    *[f"{q}_{op}" for q, op in _EXTREMA.items()],
    "asym_d_anion1",
    "asym_invr_cation",
    "seg_min_d_host",
    "seg_min_d_anion",
    "seg_min_d_cation",
    "seg_anion_gap",
    "wi_nn_end",
    "wi_nn_mid",
    "wi_frac",
    "host_vol_per_atom",
    "host_vol_per_anion",
    "host_density",
    "anion_frac",
    "anion_radius",
    "frac_O",
    "frac_S",
    "frac_Se_Te",
    "frac_F",
    "frac_N",
    "frac_halide",
    "host_X_mean",
    "host_X_std",
    "anion_X_mean",
    "cation_X_mean",
    "n_elements",
    *PROFILE_NAMES,
    *FRAMEWORK_NAMES,
)


@lru_cache(maxsize=None)
def _element_data(symbol: str) -> dict[str, float]:
    """Cached per-element numbers: Z, mass, electronegativity, common charges and radii."""
    el = Element(symbol)
    x = el.X
    if not np.isfinite(x):  # noble gases
        x = 0.0
    common = tuple(int(q) for q in el.common_oxidation_states) or (0,)
    radii = {int(k): float(v) for k, v in el.ionic_radii.items()}
    pos = max(common)
    neg = min(common)
    atomic = float(el.atomic_radius) if el.atomic_radius is not None else 1.5
    return {
        "Z": float(el.Z),
        "mass": float(el.atomic_mass),
        "X": float(x),
        "charge_pos": float(max(pos, 0)),
        "radius_pos": radii.get(pos, atomic),
        "radius_neg": radii.get(neg, atomic) if neg < 0 else atomic,
    }


def _site_symbols(band: Band) -> list[str]:
    """Element of every site (the majority element of a disordered site)."""
    out = []
    for site in band.structure:
        comp = site.species
        if len(comp) == 1:
            out.append(next(iter(comp)).symbol)
        else:
            out.append(max(comp.items(), key=lambda kv: kv[1])[0].symbol)
    return out




def _pairs(
    points: np.ndarray, centres: np.ndarray, lattice: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Periodic neighbours of ``centres`` among ``points`` (all Cartesian) within ``radius``.

    Returns:
        centre index, point index, lattice image of the point (integer offsets), and distance,
        one row per pair.
    """
    ci, pi, img, dist = find_points_in_spheres(
        np.ascontiguousarray(points, dtype=float),
        np.ascontiguousarray(centres, dtype=float),
        float(radius),
        np.array([1, 1, 1], dtype=np.int64),
        np.ascontiguousarray(lattice, dtype=float),
        1e-8,
    )
    return ci.astype(int), pi.astype(int), np.rint(np.asarray(img, dtype=float)).astype(int), dist


def _neighbours(
    points: np.ndarray, centres: np.ndarray, lattice: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`_pairs`, with the Cartesian position of the (periodic image of the) point in place of its image."""
    ci, pi, img, dist = _pairs(points, centres, lattice, radius)
    return ci, pi, points[pi] + img.astype(float) @ lattice, dist


def _framework(host_cart: np.ndarray, lattice: np.ndarray, host_sym: np.ndarray, is_anion: np.ndarray,
               ion: str) -> dict[str, float]:
    """Coordination and connectivity of the framework: the host's cations other than the working ion.

    A framework cation's anions are those within :data:`CN_FACTOR` of its nearest anion (searched
    up to :data:`FRAMEWORK_RADIUS`; none: coordination 0). Two framework polyhedra (periodic
    images apart included) that share two or more anions share an edge or a face; one anion, a
    corner. Returns the mean coordination, the shares of cations at 4 or fewer, exactly 6 and 7
    or more, framework cations per host atom, and the mean number of edge- or face-sharing and of
    corner-sharing framework neighbours per framework cation (layered and spinel MO6 share
    edges; olivine's PO4 and the open NASICON and garnet frameworks share corners); all 0 for a
    host without framework cations.
    """
    fw = np.flatnonzero(~is_anion & (host_sym != ion))
    if fw.size == 0:
        return dict.fromkeys(FRAMEWORK_NAMES, 0.0)
    ci, pi, img, dist = _pairs(host_cart, host_cart[fw], lattice, FRAMEWORK_RADIUS)
    cn = np.zeros(fw.size)
    # Anion (index, home cell) -> the framework cations bonded to it, each as (cation, its cell).
    bonded: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
    to_anion = np.flatnonzero(is_anion[pi])
    to_anion = to_anion[np.argsort(ci[to_anion], kind="stable")]
    bounds = np.searchsorted(ci[to_anion], np.arange(fw.size + 1))
    for k in range(fw.size):
        m = to_anion[bounds[k]:bounds[k + 1]]
        if not m.size:
            continue
        near = m[dist[m] <= CN_FACTOR * dist[m].min()]
        cn[k] = float(near.size)
        for j in near:
            bonded.setdefault(int(pi[j]), []).append((k, tuple(-int(v) for v in img[j])))
    shared: dict[tuple[int, int, tuple[int, ...]], int] = {}
    for cations in bonded.values():
        for k, cell_k in cations:
            for j, cell_j in cations:
                if (k, cell_k) != (j, cell_j):
                    key = (k, j, tuple(b - a for a, b in zip(cell_k, cell_j)))
                    shared[key] = shared.get(key, 0) + 1
    edge, corner = np.zeros(fw.size), np.zeros(fw.size)
    for (k, _, _), n in shared.items():
        (edge if n >= 2 else corner)[k] += 1
    return {
        "fw_cn_mean": float(cn.mean()),
        "fw_frac_cn4": float(np.mean(cn <= 4)),
        "fw_frac_cn6": float(np.mean(cn == 6)),
        "fw_frac_cn7": float(np.mean(cn >= 7)),
        "fw_cation_frac": fw.size / len(host_sym),
        "fw_edge_neighbours": float(edge.mean()),
        "fw_corner_neighbours": float(corner.mean()),
    }


def _nth(values: np.ndarray, n: int, fill: float) -> float:
    """The n-th smallest value (1-based), or ``fill`` when there are fewer."""
    if values.size < n:
        return fill
    return float(np.partition(values, n - 1)[n - 1])


def _mean_k(values: np.ndarray, k: int, fill: float) -> float:
    """Mean of the ``k`` smallest values, padding with ``fill`` when there are fewer."""
    v = np.sort(values)[:k]
    if v.size < k:
        v = np.concatenate([v, np.full(k - v.size, fill)])
    return float(v.mean())


def _segment_distances(pos: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each point in ``pos`` to the segment from ``a`` to ``b``."""
    ab = b - a
    denom = float(ab @ ab)
    if denom < 1e-12:
        return np.linalg.norm(pos - a, axis=1)
    t = np.clip((pos - a) @ ab / denom, 0.0, 1.0)
    return np.linalg.norm(pos - (a + t[:, None] * ab), axis=1)


def band_features(band: Band) -> dict[str, float]:
    """Descriptors of one migration band.

    Args:
        band: the band (ion images first, then the host).

    Returns:
        Mapping of feature name to value, keys in the order of :data:`FEATURE_NAMES`. Values are
        finite: distances with no neighbour within :data:`MAX_RADIUS` are reported as
        :data:`MAX_RADIUS`, counts and sums over empty sets as 0.
    """
    s = band.structure
    n_img = band.n_images
    lattice = np.asarray(s.lattice.matrix, dtype=float)
    symbols = _site_symbols(band)
    ion = symbols[0]
    ion_d = _element_data(ion)

    # Images as a continuous, unwrapped path in Cartesian coordinates.
    frac = s.frac_coords
    img_frac = frac[0] + np.cumsum(
        np.vstack([np.zeros(3), np.diff(frac[:n_img], axis=0) - np.round(np.diff(frac[:n_img], axis=0))]),
        axis=0,
    )
    img_cart = img_frac @ lattice

    host_sym = np.array(symbols[n_img:])
    host_cart = s.cart_coords[n_img:]
    host_frac = frac[n_img:]

    # Drop host copies of the ion sitting on an end-point site (listed twice in some bands).
    keep = np.ones(len(host_sym), dtype=bool)
    same = np.flatnonzero(host_sym == ion)
    if same.size:
        for end in (img_frac[0], img_frac[-1]):
            d = host_frac[same] - end
            d -= np.round(d)
            close = np.linalg.norm(d @ lattice, axis=1) < DUPLICATE_TOL
            keep[same[close]] = False
    if keep.sum() == 0:
        keep[:] = True
    host_sym = host_sym[keep]
    host_cart = host_cart[keep]

    elements = sorted(set(host_sym.tolist()))
    anions = anion_elements(elements)
    is_anion = np.array([e in anions for e in host_sym])
    is_cation = ~is_anion
    is_wi = host_sym == ion

    # Neighbours of every image (and the path midpoint, for the segment), growing the search
    # radius until each image sees enough atoms of each kind or MAX_RADIUS is reached.
    mid = 0.5 * (img_cart[0] + img_cart[-1])
    half = 0.5 * float(np.linalg.norm(img_cart[-1] - img_cart[0]))
    centres = np.vstack([img_cart, mid[None, :]])
    radius = COULOMB_CUTOFF
    while True:
        ci, pi, pos, dist = _neighbours(host_cart, centres, lattice, max(radius, half + 4.0))
        ok = True
        for k in range(n_img):
            m = ci == k
            if (
                m.sum() < 6
                or (is_anion.any() and not is_anion[pi[m]].any())
                or (is_cation.any() and not is_cation[pi[m]].any())
                or (is_wi.any() and not is_wi[pi[m]].any())
            ):
                ok = False
                break
        if ok or radius >= MAX_RADIUS:
            break
        radius = min(2.0 * radius, MAX_RADIUS)

    per: dict[str, np.ndarray] = {q: np.zeros(n_img) for q in _IMAGE_QUANTITIES}
    wi_nn = np.zeros(n_img)
    for k in range(n_img):
        m = ci == k
        d = dist[m]
        an = is_anion[pi[m]]
        ca = is_cation[pi[m]]
        wi = is_wi[pi[m]]
        d_an = d[an]
        per["d_host1"][k] = _nth(d, 1, MAX_RADIUS)
        per["d_host_mean4"][k] = _mean_k(d, 4, MAX_RADIUS)
        per["d_anion1"][k] = _nth(d_an, 1, MAX_RADIUS)
        per["d_anion_mean4"][k] = _mean_k(d_an, 4, MAX_RADIUS)
        per["d_cation1"][k] = _nth(d[ca], 1, MAX_RADIUS)
        per["cn_anion"][k] = float(np.sum(d_an <= CN_FACTOR * per["d_anion1"][k])) if d_an.size else 0.0
        per["cn_host_3A"][k] = float(np.sum(d <= CN_RADIUS))
        within = d <= COULOMB_CUTOFF
        safe = np.maximum(d, 0.1)
        per["invr_cation"][k] = float(np.sum(1.0 / safe[ca & within]))
        per["invr_anion"][k] = float(np.sum(1.0 / safe[an & within]))
        wi_nn[k] = _nth(d[wi], 1, MAX_RADIUS)

    feats: dict[str, float] = {
        "ion_Z": ion_d["Z"],
        "ion_mass": ion_d["mass"],
        "ion_charge": ion_d["charge_pos"],
        "ion_radius": ion_d["radius_pos"],
        "ion_X": ion_d["X"],
        "hop_length": float(band.hop_length),
    }
    mid_i = n_img // 2
    for q in _IMAGE_QUANTITIES:
        v = per[q]
        end = 0.5 * (v[0] + v[-1])
        feats[f"{q}_end"] = float(end)
        feats[f"{q}_mid"] = float(v[mid_i])
        feats[f"{q}_delta"] = float(v[mid_i] - end)
    for q, op in _EXTREMA.items():
        feats[f"{q}_{op}"] = float(np.min(per[q]) if op == "min" else np.max(per[q]))
    feats["asym_d_anion1"] = float(abs(per["d_anion1"][0] - per["d_anion1"][-1]))
    feats["asym_invr_cation"] = float(abs(per["invr_cation"][0] - per["invr_cation"][-1]))

    # Bottleneck of the straight path: host atoms near the midpoint, distance to the segment.
    m = ci == n_img
    seg = _segment_distances(pos[m], img_cart[0], img_cart[-1])
    an = is_anion[pi[m]]
    ca = is_cation[pi[m]]
    feats["seg_min_d_host"] = float(seg.min()) if seg.size else MAX_RADIUS
    feats["seg_min_d_anion"] = float(seg[an].min()) if an.any() else MAX_RADIUS
    feats["seg_min_d_cation"] = float(seg[ca].min()) if ca.any() else MAX_RADIUS

    # Host chemistry.
    n_host = len(host_sym)
    counts = {e: int(np.sum(host_sym == e)) for e in elements}
    n_anion = int(is_anion.sum())
    anion_radius = (
        float(np.mean([_element_data(e)["radius_neg"] for e in host_sym[is_anion]]))
        if n_anion
        else 0.0
    )
    feats["seg_anion_gap"] = feats["seg_min_d_anion"] - ion_d["radius_pos"] - anion_radius
    feats["wi_nn_end"] = float(0.5 * (wi_nn[0] + wi_nn[-1]))
    feats["wi_nn_mid"] = float(wi_nn[mid_i])
    feats["wi_frac"] = counts.get(ion, 0) / n_host

    volume = float(s.lattice.volume)
    mass = float(sum(_element_data(e)["mass"] * c for e, c in counts.items()))
    feats["host_vol_per_atom"] = volume / n_host
    feats["host_vol_per_anion"] = volume / max(n_anion, 1)
    feats["host_density"] = mass / volume * _AMU_PER_A3_TO_G_PER_CM3
    feats["anion_frac"] = n_anion / n_host
    feats["anion_radius"] = anion_radius

    def frac_of(group: set[str] | frozenset[str]) -> float:
        return sum(counts.get(e, 0) for e in group if e in anions) / n_host

    feats["frac_O"] = frac_of({"O"})
    feats["frac_S"] = frac_of({"S"})
    feats["frac_Se_Te"] = frac_of({"Se", "Te"})
    feats["frac_F"] = frac_of({"F"})
    feats["frac_N"] = frac_of({"N"})
    feats["frac_halide"] = frac_of(_HALIDES)

    xs = np.array([_element_data(e)["X"] for e in host_sym])
    feats["host_X_mean"] = float(xs.mean())
    feats["host_X_std"] = float(xs.std())
    feats["anion_X_mean"] = float(xs[is_anion].mean()) if n_anion else 0.0
    feats["cation_X_mean"] = float(xs[is_cation].mean()) if is_cation.any() else 0.0
    feats["n_elements"] = float(len(elements))

    # Bond-valence / electrostatic / steric profile along a path allowed to bend (version 2).
    radii = np.array([_element_data(e)["radius_neg"] if a else _element_data(e)["radius_pos"]
                      for e, a in zip(host_sym, is_anion)])
    r0 = np.array([bond_valence_r0(ion, e, ion_d["radius_pos"] + _element_data(e)["radius_neg"] - 0.5)
                   if a else 0.0 for e, a in zip(host_sym, is_anion)])
    charge = np.array([0.0 if a else _element_data(e)["charge_pos"] for e, a in zip(host_sym, is_anion)])
    feats.update(path_profile(img_cart[0], img_cart[-1], lattice, host_cart, is_anion, r0, charge, radii,
                              max(ion_d["charge_pos"], 1.0), ion_d["radius_pos"]))

    feats.update(_framework(host_cart, lattice, host_sym, is_anion, ion))

    return {name: feats[name] for name in FEATURE_NAMES}


def feature_matrix(bands: Sequence[Band]) -> pd.DataFrame:
    """Descriptors of many bands, one row per band, columns in :data:`FEATURE_NAMES` order.

    Args:
        bands: the bands.

    Returns:
        A float64 frame with ``len(bands)`` rows.
    """
    rows = [band_features(b) for b in bands]
    return pd.DataFrame(rows, columns=list(FEATURE_NAMES), dtype=float)
