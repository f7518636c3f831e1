"""K-fold training of band models: out-of-fold predictions (CV) and the fold ensemble."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from screener.model.alignn import BandALIGNN
from screener.model.graphs import GraphCache
from screener.model.inference import default_device, predict_pairs
from screener.model.trees import BoostingModel, ForestModel, predict_with_spread
from screener.training.dataset import Entry
from screener.training.metrics import class_stratified_folds, regression_metrics
from screener.training.trainer import ExperimentConfig, train_model

log = logging.getLogger(__name__)


def fold_member_path(out: Path, fold: int) -> Path:
    """Where the weights of fold ``fold`` are written."""
    return out / f"fold{fold}.pt"


def run_folds(
    entries: list[Entry],
    config: ExperimentConfig,
    out: Path,
    cache: GraphCache,
    folds_to_run: list[int] | None = None,
    device: torch.device | None = None,
) -> pd.DataFrame:
    """Train one model per fold, predicting the held-out fold; resumable.

    A fold whose weights already exist in ``out`` is loaded instead of retrained.

    Returns:
        Out-of-fold predictions: ``jid``, ``fold``, ``target``, ``pred`` (NaN for folds not run).
    """
    out.mkdir(parents=True, exist_ok=True)
    device = device or default_device()
    entries = [e for e in entries if e.band is not None and e.target is not None]
    labels = [e.label for e in entries]
    folds = class_stratified_folds(labels, config.n_folds, config.fold_seed)
    y = np.array([e.target for e in entries], dtype=np.float32)
    t0 = time.perf_counter()
    pairs = [cache.get(e.band) for e in entries]
    log.info("graphs of %d bands ready in %.1fs", len(pairs), time.perf_counter() - t0)
    pred = np.full(len(entries), np.nan)
    for k in folds_to_run if folds_to_run is not None else range(config.n_folds):
        test = np.flatnonzero(folds == k)
        train = np.flatnonzero(folds != k)
        path = fold_member_path(out, k)
        if path.exists():
            model = BandALIGNN(config.model)
            model.load_state_dict(torch.load(path, weights_only=True))
            model.to(device)
            log.info("fold %d: loaded %s", k, path)
        else:
            tc = config.train
            tcfg = type(tc).from_dict({**tc.__dict__, "seed": tc.seed + k})
            model, history = train_model(
                [pairs[i] for i in train], y[train], config.model, tcfg, device=device,
                tag=f"fold {k}: ",
            )
            tmp = path.with_suffix(".tmp")
            torch.save(model.state_dict(), tmp)
            tmp.replace(path)
            (out / f"fold{k}_history.json").write_text(json.dumps(history, indent=1))
        pred[test] = predict_pairs(model, [pairs[i] for i in test], device=device)
        log.info("fold %d: test MAE %.4f (n=%d)", k, np.mean(np.abs(pred[test] - y[test])), len(test))
    df = pd.DataFrame({"jid": [e.jid for e in entries], "fold": folds, "target": y, "pred": pred})
    done = df["pred"].notna()
    if done.any():
        m = regression_metrics(df.loc[done, "target"], df.loc[done, "pred"])
        log.info("out-of-fold over %d entries: MAE %.4f R2 %.3f", m["n"], m["mae"], m["r2"])
    return df


def tree_folds(
    entries: list[Entry], config: ExperimentConfig, features: pd.DataFrame
) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
    """Out-of-fold predictions and per-fold descriptor tree models.

    Each fold fits every kind in ``config.tree_kinds`` (gradient boosting, extra-trees); the
    tree prediction is the mean of the kinds.

    Returns:
        Out-of-fold tree predictions (mean of the kinds), the fitted models (fold-major order),
        the out-of-fold predictions of each kind (kinds x entries), and the variance of the single
        trees within a model (mean over the kinds; 0 for boosting, whose trees are not
        predictions on their own).
    """

    entries = [e for e in entries if e.band is not None and e.target is not None]
    folds = class_stratified_folds([e.label for e in entries], config.n_folds, config.fold_seed)
    y = np.array([e.target for e in entries], dtype=float)
    pred = np.full(len(entries), np.nan)
    per_kind = np.full((len(config.tree_kinds), len(entries)), np.nan)
    within = np.zeros(len(entries))
    models = []
    for k in range(config.n_folds):
        test, train = folds == k, folds != k
        forest = {**config.forest, **choose_forest_params(features[train], y[train], folds[train], config)}
        makers = {"hist_gradient_boosting": lambda: BoostingModel(**config.boosting),
                  "extra_trees": lambda forest=forest: ForestModel(**forest)}
        fold_preds, fold_within = [], []
        for kind in config.tree_kinds:
            m = makers[kind]().fit(features[train], y[train])
            p, sd = predict_with_spread(m, features[test])
            fold_preds.append(p)
            fold_within.append(sd**2)
            models.append(m)
        per_kind[:, test] = np.array(fold_preds)
        within[test] = np.mean(fold_within, axis=0)
        pred[test] = np.mean(fold_preds, axis=0)
        log.info("descriptor trees fold %d: test MAE %.4f", k, np.mean(np.abs(pred[test] - y[test])))
    return pred, models, per_kind, within


def _grid(grid: dict[str, list]) -> list[dict]:
    """Every combination of a parameter grid, in a fixed order."""
    combos: list[dict] = [{}]
    for name in sorted(grid):
        combos = [{**c, name: v} for c in combos for v in grid[name]]
    return combos


def choose_forest_params(features: pd.DataFrame, y: np.ndarray, folds: np.ndarray,
                         config: ExperimentConfig) -> dict:
    """The ``config.forest_grid`` setting with the lowest MAE in a CV over ``folds`` (``{}`` without a grid).

    Called with one outer fold's training rows and their own fold labels, this is the inner loop
    of a nested cross-validation.
    """
    combos = _grid(config.forest_grid)
    if len(combos) < 2:
        return combos[0] if combos else {}
    inner = np.unique(folds)
    scores = []
    for combo in combos:
        err = 0.0
        for j in inner:
            tr, te = folds != j, folds == j
            m = ForestModel(**{**config.forest, **combo}).fit(features[tr], y[tr])
            err += float(np.abs(m.predict(features[te]) - y[te]).sum())
        scores.append(err / len(y))
    best = combos[int(np.argmin(scores))]
    log.info("forest setting %s (inner CV MAE %.4f; grid %s)", best, min(scores),
             {str(c): round(s, 4) for c, s in zip(combos, scores)})
    return best


def choose_blend_weight(y: np.ndarray, graph: np.ndarray, trees: np.ndarray) -> float:
    """Weight of the graph model in the blend that minimises the out-of-fold MAE (grid of 0.05)."""
    grid = np.round(np.linspace(0.0, 1.0, 21), 2)
    maes = [np.mean(np.abs(np.clip(w * graph + (1 - w) * trees, 0, None) - y)) for w in grid]
    return float(grid[int(np.argmin(maes))])


def crossfit_blend(
    y: np.ndarray, graph: np.ndarray, trees: np.ndarray, folds: np.ndarray
) -> tuple[np.ndarray, list[float]]:
    """Blend scored without choosing its weight on the entries it is scored on.

    The weight used on fold ``k`` is the one :func:`choose_blend_weight` picks from the
    out-of-fold predictions of the other folds.

    Returns:
        The blended out-of-fold predictions and the weight used on each fold.
    """
    pred = np.full(len(y), np.nan)
    weights = []
    for k in np.unique(folds):
        rest, this = folds != k, folds == k
        w = choose_blend_weight(y[rest], graph[rest], trees[rest])
        pred[this] = np.clip(w * graph[this] + (1 - w) * trees[this], 0, None)
        weights.append(w)
    return pred, weights
