"""Hand-made, physically motivated descriptors of a migration band and a GBM model on them.

:func:`band_features` turns one :class:`~screener._band.Band` into a flat mapping of ~60 floats:

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
* host chemistry: volume and mass density, anion make-up, electronegativity statistics.

Anions are guessed simply: the most electronegative host element is always an anion, and any other
host element among O, S, Se, Te, F, Cl, Br, I, N whose Pauling electronegativity is within 0.8 of
the most electronegative one is an anion too (so S in sulphates and P in phosphates count as
cations, S next to Cl in argyrodites as an anion). Every other host element is a cation, the
working ions of the host included.

Nothing here uses a structural class, a formula label or any tabulated column: the features are a
pure function of the band, so they are computable for any new band.

:class:`DescriptorModel` wraps a scikit-learn ``HistGradientBoostingRegressor`` on these features and
saves it as plain numpy arrays (``np.savez``, read back with ``allow_pickle=False``); the saved
trees are evaluated by a small numpy tree walker, so loading needs neither pickle nor sklearn.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Element
from pymatgen.optimization.neighbors import find_points_in_spheres

from screener._band import Band

FEATURE_VERSION = 1

#: Elements that may act as anions (when electronegative enough relative to the host's most
#: electronegative element).
ANION_CANDIDATES = frozenset({"O", "S", "Se", "Te", "F", "Cl", "Br", "I", "N"})
#: A candidate is an anion when its electronegativity is within this of the host's maximum.
ANION_X_WINDOW = 0.8
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
)


# --------------------------------------------------------------------------- element data
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


def anion_elements(host_elements: Sequence[str]) -> frozenset[str]:
    """Guess which host elements are anions (see the module docstring for the rule).

    Args:
        host_elements: the distinct element symbols of the host.

    Returns:
        The anion symbols; never empty when ``host_elements`` is not.
    """
    els = sorted(set(host_elements))
    if not els:
        return frozenset()
    xs = {e: _element_data(e)["X"] for e in els}
    top = max(els, key=lambda e: xs[e])
    anions = {top}
    for e in els:
        if e in ANION_CANDIDATES and xs[e] >= xs[top] - ANION_X_WINDOW:
            anions.add(e)
    return frozenset(anions)


# --------------------------------------------------------------------------- neighbours
def _neighbours(
    points: np.ndarray, centres: np.ndarray, lattice: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Periodic neighbours of ``centres`` among ``points`` (all Cartesian) within ``radius``.

    Returns:
        centre index, point index, Cartesian position of the (periodic image of the) point, and
        distance, one row per pair.
    """
    ci, pi, img, dist = find_points_in_spheres(
        np.ascontiguousarray(points, dtype=float),
        np.ascontiguousarray(centres, dtype=float),
        float(radius),
        np.array([1, 1, 1], dtype=np.int64),
        np.ascontiguousarray(lattice, dtype=float),
        1e-8,
    )
    pos = points[pi] + np.asarray(img, dtype=float) @ lattice
    return ci.astype(int), pi.astype(int), pos, dist


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


# --------------------------------------------------------------------------- features
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


# --------------------------------------------------------------------------- model
_TRANSFORMS = ("none", "log1p", "sqrt")


def _forward(transform: str, y: np.ndarray) -> np.ndarray:
    """Target transform applied before fitting (barriers below 0 are clipped to 0 first)."""
    y = np.asarray(y, dtype=float)
    if transform == "log1p":
        return np.log1p(np.clip(y, 0.0, None))
    if transform == "sqrt":
        return np.sqrt(np.clip(y, 0.0, None))
    return y


def _inverse(transform: str, raw: np.ndarray) -> np.ndarray:
    """Barriers (eV) from raw model outputs; transformed targets are clipped at 0."""
    if transform == "log1p":
        return np.clip(np.expm1(raw), 0.0, None)
    if transform == "sqrt":
        return np.square(np.clip(raw, 0.0, None))
    return raw

#: Default ``HistGradientBoostingRegressor`` settings of :class:`DescriptorModel` (with the
#: ``log1p`` target transform): the setting chosen most often by the inner CV of
#: ``benchmarks/cv_baselines.py``.
DEFAULT_GBM_PARAMS: dict[str, Any] = {
    "loss": "squared_error",
    "learning_rate": 0.05,
    "max_iter": 300,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 10,
    "l2_regularization": 1.0,
    "early_stopping": False,
}


def _walk_trees(X: np.ndarray, offsets: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
                left: np.ndarray, right: np.ndarray, is_leaf: np.ndarray,
                missing_left: np.ndarray | None) -> np.ndarray:
    """Leaf node (global index) reached by every row in every tree, all trees walked at once.

    Trees are stored one after another; ``offsets[i]`` is the first node of tree ``i`` and child
    indices are relative to it. One numpy step per tree level, for all rows and trees together.
    """
    base = np.asarray(offsets[:-1], dtype=np.int64)[None, :]
    node = np.repeat(base, X.shape[0], axis=0)
    rows = np.repeat(np.arange(X.shape[0])[:, None], base.shape[1], axis=1)
    active = ~is_leaf[node]
    while active.any():
        a = node[active]
        x = X[rows[active], feature[a]]
        go_left = x <= threshold[a]
        if missing_left is not None:
            go_left = np.where(np.isnan(x), missing_left[a], go_left)
        node[active] = base.repeat(X.shape[0], axis=0)[active] + np.where(go_left, left[a], right[a])
        active = ~is_leaf[node]
    return node


class DescriptorModel:
    """Gradient-boosted trees on :func:`band_features`, savable without pickle.

    Fitting uses scikit-learn's ``HistGradientBoostingRegressor``; the fitted trees are then
    exported to flat numpy arrays and prediction walks those arrays, so a model read back with
    :meth:`load` predicts exactly what the fitted model predicted.

    Args:
        transform: target transform, ``"none"``, ``"log1p"`` (fit on ``log1p(Em)``, predict
            ``expm1``) or ``"sqrt"`` (fit on ``sqrt(Em)``, predict the square); transformed
            predictions are never below 0.
        **params: keyword arguments of ``HistGradientBoostingRegressor``, overriding
            :data:`DEFAULT_GBM_PARAMS` (``loss`` may be ``squared_error``, ``absolute_error`` or
            ``quantile``: losses with an identity link).
    """

    def __init__(self, transform: str = "log1p", **params: Any) -> None:
        if transform not in _TRANSFORMS:
            raise ValueError(f"transform must be one of {_TRANSFORMS}, got {transform!r}")
        params = {**DEFAULT_GBM_PARAMS, **params}
        loss = params["loss"]
        if loss not in ("squared_error", "absolute_error", "quantile"):
            raise ValueError(f"loss {loss!r} has no identity link; not supported")
        self.transform = transform
        self.params: dict[str, Any] = dict(params)
        self.feature_names: list[str] = list(FEATURE_NAMES)
        self.feature_version: int = FEATURE_VERSION
        self._trees: dict[str, np.ndarray] | None = None
        self._baseline: float = 0.0

    # ------------------------------------------------------------------ fitting
    def _as_matrix(self, bands_or_X: Any) -> np.ndarray:
        if isinstance(bands_or_X, pd.DataFrame):
            missing = [c for c in self.feature_names if c not in bands_or_X.columns]
            if missing:
                raise ValueError(f"feature frame lacks columns {missing[:5]}")
            return bands_or_X[self.feature_names].to_numpy(dtype=float)
        if isinstance(bands_or_X, Band):
            bands_or_X = [bands_or_X]
        if isinstance(bands_or_X, (list, tuple)) and bands_or_X and isinstance(bands_or_X[0], Band):
            return feature_matrix(bands_or_X).to_numpy(dtype=float)
        X = np.asarray(bands_or_X, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"X must be (n, {len(self.feature_names)}), got {X.shape}")
        return X

    def fit(self, bands_or_X: Any, y: Sequence[float] | np.ndarray) -> DescriptorModel:
        """Fit on bands (features computed here), a feature frame or a feature matrix.

        Args:
            bands_or_X: list of :class:`Band`, a frame with the :data:`FEATURE_NAMES` columns, or
                an ``(n, n_features)`` array in that column order.
            y: barriers in eV.

        Returns:
            self.
        """
        from sklearn.ensemble import HistGradientBoostingRegressor

        X = self._as_matrix(bands_or_X)
        yt = _forward(self.transform, y)
        est = HistGradientBoostingRegressor(**self.params)
        est.fit(X, yt)
        self._export(est)
        return self

    def _export(self, est: Any) -> None:
        """Flatten the fitted sklearn trees into numpy arrays."""
        feats, thr, mleft, left, right, leaf, value, offsets = [], [], [], [], [], [], [], [0]
        for per_iter in est._predictors:
            if len(per_iter) != 1:
                raise ValueError("only single-output regression is supported")
            nodes = per_iter[0].nodes
            if np.any(nodes["is_categorical"]):
                raise ValueError("categorical splits are not supported")
            feats.append(nodes["feature_idx"].astype(np.int64))
            thr.append(nodes["num_threshold"].astype(np.float64))
            mleft.append(nodes["missing_go_to_left"].astype(bool))
            left.append(nodes["left"].astype(np.int64))
            right.append(nodes["right"].astype(np.int64))
            leaf.append(nodes["is_leaf"].astype(bool))
            value.append(nodes["value"].astype(np.float64))
            offsets.append(offsets[-1] + len(nodes))
        self._trees = {
            "feature_idx": np.concatenate(feats),
            "threshold": np.concatenate(thr),
            "missing_left": np.concatenate(mleft),
            "left": np.concatenate(left),
            "right": np.concatenate(right),
            "is_leaf": np.concatenate(leaf),
            "value": np.concatenate(value),
            "offsets": np.asarray(offsets, dtype=np.int64),
        }
        self._baseline = float(np.asarray(est._baseline_prediction).ravel()[0])

    # ------------------------------------------------------------------ prediction
    def _raw_predict(self, X: np.ndarray) -> np.ndarray:
        if self._trees is None:
            raise RuntimeError("model is not fitted")
        t = self._trees
        leaves = _walk_trees(X, t["offsets"], t["feature_idx"], t["threshold"], t["left"], t["right"],
                             t["is_leaf"], t["missing_left"])
        return self._baseline + t["value"][leaves].sum(axis=1)

    def predict(self, bands_or_X: Any) -> np.ndarray:
        """Predicted barriers (eV) for bands, a feature frame or a feature matrix."""
        return _inverse(self.transform, self._raw_predict(self._as_matrix(bands_or_X)))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the model as an ``.npz`` of plain arrays (no pickled objects)."""
        if self._trees is None:
            raise RuntimeError("model is not fitted")
        meta = {
            "transform": np.array(self.transform),
            "feature_names": np.array(self.feature_names),
            "feature_version": np.array(self.feature_version, dtype=np.int64),
            "baseline": np.array(self._baseline, dtype=np.float64),
            "param_keys": np.array(sorted(self.params), dtype=str),
            "param_values": np.array([repr(self.params[k]) for k in sorted(self.params)], dtype=str),
        }
        with open(path, "wb") as fh:
            np.savez(fh, **self._trees, **meta)

    @classmethod
    def load(cls, path: str | Path) -> DescriptorModel:
        """Read a model written by :meth:`save` (``allow_pickle=False``).

        Raises:
            ValueError: when the file's feature set is not this version's.
        """
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        model = cls(transform=str(data["transform"]))
        model.params = {  # informational: the saved trees are what predicts
            str(k): ast.literal_eval(str(v))
            for k, v in zip(data["param_keys"], data["param_values"], strict=True)
        }
        names = [str(n) for n in data["feature_names"]]
        version = int(data["feature_version"])
        if version != FEATURE_VERSION or names != list(FEATURE_NAMES):
            raise ValueError(
                f"model features (version {version}) do not match this code's (version {FEATURE_VERSION})"
            )
        model.feature_names = names
        model.feature_version = version
        model._baseline = float(data["baseline"])
        model._trees = {
            k: data[k]
            for k in ("feature_idx", "threshold", "missing_left", "left", "right", "is_leaf", "value", "offsets")
        }
        return model

    @property
    def n_trees(self) -> int:
        """Number of boosted trees."""
        return 0 if self._trees is None else len(self._trees["offsets"]) - 1


class ForestModel:
    """Extra-trees on :func:`band_features`, savable without pickle.

    Fitting uses scikit-learn's ``ExtraTreesRegressor`` (on ``sqrt(Em)`` by default); the trees
    are exported to flat arrays and prediction averages their leaf values, so a model read back
    with :meth:`load` predicts exactly what the fitted model predicted.

    Args:
        transform: ``"none"``, ``"log1p"`` or ``"sqrt"`` (see :class:`DescriptorModel`).
        **params: keyword arguments of ``ExtraTreesRegressor`` overriding :data:`DEFAULT_FOREST_PARAMS`.
    """

    kind = "extra_trees"

    def __init__(self, transform: str = "sqrt", **params: Any) -> None:
        if transform not in _TRANSFORMS:
            raise ValueError(f"transform must be one of {_TRANSFORMS}, got {transform!r}")
        self.transform = transform
        self.params: dict[str, Any] = {**DEFAULT_FOREST_PARAMS, **params}
        self.feature_names: list[str] = list(FEATURE_NAMES)
        self.feature_version: int = FEATURE_VERSION
        self._trees: dict[str, np.ndarray] | None = None

    def fit(self, bands_or_X: Any, y: Sequence[float] | np.ndarray) -> ForestModel:
        """Fit on bands, a feature frame or a feature matrix (see :meth:`DescriptorModel.fit`)."""
        from sklearn.ensemble import ExtraTreesRegressor

        X = DescriptorModel._as_matrix(self, bands_or_X)  # same input handling
        yt = _forward(self.transform, y)
        est = ExtraTreesRegressor(**self.params).fit(X, yt)
        feats, thr, left, right, value, offsets = [], [], [], [], [], [0]
        for tree in est.estimators_:
            t = tree.tree_
            feats.append(t.feature.astype(np.int32))
            thr.append(t.threshold.astype(np.float64))
            left.append(t.children_left.astype(np.int32))
            right.append(t.children_right.astype(np.int32))
            value.append(t.value[:, 0, 0].astype(np.float64))
            offsets.append(offsets[-1] + t.node_count)
        self._trees = {
            "feature_idx": np.concatenate(feats), "threshold": np.concatenate(thr),
            "left": np.concatenate(left), "right": np.concatenate(right),
            "value": np.concatenate(value), "offsets": np.asarray(offsets, dtype=np.int64),
        }
        return self

    def _leaf_values(self, X: np.ndarray) -> np.ndarray:
        """(bands, trees) leaf values on the transformed scale."""
        if self._trees is None:
            raise RuntimeError("model is not fitted")
        t = self._trees
        leaves = _walk_trees(X, t["offsets"], t["feature_idx"], t["threshold"], t["left"], t["right"],
                             t["left"] < 0, None)
        return t["value"][leaves]

    def _raw_predict(self, X: np.ndarray) -> np.ndarray:
        return self._leaf_values(X).mean(axis=1)

    def predict(self, bands_or_X: Any) -> np.ndarray:
        """Predicted barriers (eV)."""
        raw = self._raw_predict(DescriptorModel._as_matrix(self, bands_or_X))
        return _inverse(self.transform, raw)

    def predict_spread(self, bands_or_X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Predicted barriers (eV) and the standard deviation of the single trees' barriers.

        The spread of the trees (each tree's leaf value, back-transformed) is the forest's own
        uncertainty: large where the training data say little about a band.
        """
        raw = self._leaf_values(DescriptorModel._as_matrix(self, bands_or_X))
        return _inverse(self.transform, raw.mean(axis=1)), _inverse(self.transform, raw).std(axis=1)

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` of plain arrays (no pickled objects)."""
        if self._trees is None:
            raise RuntimeError("model is not fitted")
        with open(path, "wb") as fh:
            np.savez_compressed(
                fh, **self._trees, kind=np.array(self.kind), transform=np.array(self.transform),
                feature_names=np.array(self.feature_names),
                feature_version=np.array(self.feature_version, dtype=np.int64),
            )

    @classmethod
    def load(cls, path: str | Path) -> ForestModel:
        """Read a model written by :meth:`save` (``allow_pickle=False``)."""
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        names = [str(n) for n in data["feature_names"]]
        if int(data["feature_version"]) != FEATURE_VERSION or names != list(FEATURE_NAMES):
            raise ValueError("model features do not match this code's feature version")
        model = cls(transform=str(data["transform"]))
        model._trees = {k: data[k] for k in ("feature_idx", "threshold", "left", "right", "value", "offsets")}
        return model


#: Default ``ExtraTreesRegressor`` settings of :class:`ForestModel` (with the ``sqrt`` target
#: transform): leaf size, share of features per split and transform were chosen by an inner
#: 4-fold CV inside each outer training fold (``sqrt`` with all features won in 4 of 5 folds,
#: leaf size 1 in all; see ``benchmarks/cv_trees.py``).
DEFAULT_FOREST_PARAMS: dict[str, Any] = {
    "n_estimators": 200,
    "min_samples_leaf": 1,
    "max_features": 1.0,
    "random_state": 0,
    "n_jobs": 1,
}


def predict_with_spread(model: DescriptorModel | ForestModel, X: Any) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of a tree model and the spread of its single trees (zeros for boosting,
    whose trees are not predictions on their own)."""
    if isinstance(model, ForestModel):
        return model.predict_spread(X)
    pred = model.predict(X)
    return pred, np.zeros(len(pred))


def load_tree_model(path: str | Path) -> DescriptorModel | ForestModel:
    """Load a descriptor tree model of either kind from its ``.npz``."""
    with np.load(path, allow_pickle=False) as z:
        kind = str(z["kind"]) if "kind" in z.files else "hist_gradient_boosting"
    return ForestModel.load(path) if kind == "extra_trees" else DescriptorModel.load(path)
