"""Tree models on the band descriptors, saved without pickle.

:class:`ForestModel` (extra-trees, the members of the shipped model) and :class:`BoostingModel`
(histogram gradient boosting, a baseline) are fitted with scikit-learn on
:func:`~screener.model.descriptors.feature_matrix` and saved as plain numpy arrays (``np.savez``,
read back with ``allow_pickle=False``); the saved trees are evaluated by a small numpy tree walker,
so loading needs neither pickle nor scikit-learn.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from screener.core.band import Band
from screener.model.descriptors import FEATURE_NAMES, FEATURE_VERSION, feature_matrix

_TRANSFORMS = ("none", "log1p", "sqrt")
_AGGREGATES = ("mean", "median")


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


#: Default ``HistGradientBoostingRegressor`` settings of :class:`BoostingModel` (with the
#: ``log1p`` target transform): the setting chosen most often by the inner CV of
#: ``benchmarks/cv_baselines.py``.
DEFAULT_BOOSTING_PARAMS: dict[str, Any] = {
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


class BoostingModel:
    """Gradient-boosted trees on :func:`band_features`, savable without pickle.

    Fitting uses scikit-learn's ``HistGradientBoostingRegressor``; the fitted trees are then
    exported to flat numpy arrays and prediction walks those arrays, so a model read back with
    :meth:`load` predicts exactly what the fitted model predicted.

    Args:
        transform: target transform, ``"none"``, ``"log1p"`` (fit on ``log1p(Em)``, predict
            ``expm1``) or ``"sqrt"`` (fit on ``sqrt(Em)``, predict the square); transformed
            predictions are never below 0.
        **params: keyword arguments of ``HistGradientBoostingRegressor``, overriding
            :data:`DEFAULT_BOOSTING_PARAMS` (``loss`` may be ``squared_error``, ``absolute_error`` or
            ``quantile``: losses with an identity link).
    """

    def __init__(self, transform: str = "log1p", **params: Any) -> None:
        if transform not in _TRANSFORMS:
            raise ValueError(f"transform must be one of {_TRANSFORMS}, got {transform!r}")
        params = {**DEFAULT_BOOSTING_PARAMS, **params}
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

    def fit(self, bands_or_X: Any, y: Sequence[float] | np.ndarray) -> BoostingModel:
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
    def load(cls, path: str | Path) -> BoostingModel:
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
    are exported to flat arrays and prediction takes the mean (or median) of their leaf values, so a model read back
    with :meth:`load` predicts exactly what the fitted model predicted.

    Args:
        transform: ``"none"``, ``"log1p"`` or ``"sqrt"`` (see :class:`BoostingModel`).
        aggregate: how the single trees' leaf values make the prediction: ``"mean"`` (the usual
            forest) or ``"median"`` (the minimiser of the absolute error, the metric the model is
            chosen on; the transforms are monotone, so the median commutes with them).
        **params: keyword arguments of ``ExtraTreesRegressor`` overriding :data:`DEFAULT_FOREST_PARAMS`.
    """

    kind = "extra_trees"

    def __init__(self, transform: str = "sqrt", aggregate: str = "mean", **params: Any) -> None:
        if transform not in _TRANSFORMS:
            raise ValueError(f"transform must be one of {_TRANSFORMS}, got {transform!r}")
        if aggregate not in _AGGREGATES:
            raise ValueError(f"aggregate must be one of {_AGGREGATES}, got {aggregate!r}")
        self.transform = transform
        self.aggregate = aggregate
        self.params: dict[str, Any] = {**DEFAULT_FOREST_PARAMS, **params}
        self.feature_names: list[str] = list(FEATURE_NAMES)
        self.feature_version: int = FEATURE_VERSION
        self._trees: dict[str, np.ndarray] | None = None

    def fit(self, bands_or_X: Any, y: Sequence[float] | np.ndarray) -> ForestModel:
        """Fit on bands, a feature frame or a feature matrix (see :meth:`BoostingModel.fit`)."""
        from sklearn.ensemble import ExtraTreesRegressor

        X = BoostingModel._as_matrix(self, bands_or_X)  # same input handling
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
        # scikit-learn grows and walks its trees on float32 features: a value within float32
        # rounding of a threshold goes the way the fitted tree sends it only in float32.
        leaves = _walk_trees(np.asarray(X, dtype=np.float32), t["offsets"], t["feature_idx"], t["threshold"],
                             t["left"], t["right"], t["left"] < 0, None)
        return t["value"][leaves]

    def _center(self, leaf_values: np.ndarray) -> np.ndarray:
        """The forest's prediction on the transformed scale from (bands, trees) leaf values."""
        if self.aggregate == "median":
            return np.median(leaf_values, axis=1)
        return leaf_values.mean(axis=1)

    def _raw_predict(self, X: np.ndarray) -> np.ndarray:
        return self._center(self._leaf_values(X))

    def predict(self, bands_or_X: Any) -> np.ndarray:
        """Predicted barriers (eV)."""
        raw = self._raw_predict(BoostingModel._as_matrix(self, bands_or_X))
        return _inverse(self.transform, raw)

    def predict_spread(self, bands_or_X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Predicted barriers (eV) and the standard deviation of the single trees' barriers.

        The spread of the trees (each tree's leaf value, back-transformed) is the forest's own
        uncertainty: large where the training data say little about a band.
        """
        raw = self._leaf_values(BoostingModel._as_matrix(self, bands_or_X))
        return _inverse(self.transform, self._center(raw)), _inverse(self.transform, raw).std(axis=1)

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` of plain arrays (no pickled objects)."""
        if self._trees is None:
            raise RuntimeError("model is not fitted")
        with open(path, "wb") as fh:
            np.savez_compressed(
                fh, **self._trees, kind=np.array(self.kind), transform=np.array(self.transform),
                aggregate=np.array(self.aggregate),
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
        model = cls(transform=str(data["transform"]), aggregate=str(data.get("aggregate", "mean")))
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


def predict_with_spread(model: BoostingModel | ForestModel, X: Any) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of a tree model and the spread of its single trees (zeros for boosting,
    whose trees are not predictions on their own)."""
    if isinstance(model, ForestModel):
        return model.predict_spread(X)
    pred = model.predict(X)
    return pred, np.zeros(len(pred))


def load_tree_model(path: str | Path) -> BoostingModel | ForestModel:
    """Load a descriptor tree model of either kind from its ``.npz``."""
    with np.load(path, allow_pickle=False) as z:
        kind = str(z["kind"]) if "kind" in z.files else "hist_gradient_boosting"
    return ForestModel.load(path) if kind == "extra_trees" else BoostingModel.load(path)
