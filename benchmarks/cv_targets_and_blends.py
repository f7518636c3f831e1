"""Nested CV of four more changes to em-band v3.1's trees (tried 2026-12-07; none shipped).

The results in ``benchmarks/results/`` were recorded against em-band v3.1 (descriptors v2); run again,
the script reads the shipped model's training set, descriptors v3 since em-band v3.2.

Reads ``training_set.npz`` of a model directory (descriptors v2, targets and the 5 outer folds of
``screener train``). Every variant keeps the shipped grid (``max_features`` 0.5/0.7/1.0 x sqrt or
log1p target, the median of 200 extra-trees), picked per outer fold by the inner CV over that
fold's other 4 folds, as ``screener train`` picks it, and changes one thing:

* ``shipped``: nothing (the reference, same seeds);
* ``hgb_blend``: a blend with gradient-boosted trees (scikit-learn's histogram GBM, absolute
  error on log1p(Em), settings fixed beforehand), its weight 0-0.5 chosen by the inner CV;
* ``ion_ratio``: the trees learn Em over the median barrier of the working ion (in the
  training folds) and scale back, so that no split is spent on the ion's level;
* ``pca10``: the descriptors plus their first 10 principal components (standardised, fitted
  on the training folds): oblique directions that axis-aligned splits cannot make;
* ``bootstrap``: each tree grown on a bootstrap sample instead of the whole training set.

Usage::

    python benchmarks/cv_targets_and_blends.py [--model DIR] [--seeds 0,1,2] [--variants ...]

Prints one JSON line per variant and seed and writes ``benchmarks/results/cv_targets_and_blends.json``.
About 1 minute per variant and seed on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.preprocessing import StandardScaler

from cv_host_symmetry import SHARES, TRANSFORMS, forest_predict  # the shipped grid and forest

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("shipped", "hgb_blend", "ion_ratio", "pca10", "bootstrap")
BLEND_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
ION_Z = 0  # column of the working ion's atomic number in the descriptors


def trees(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, share: float, transform: str, seed: int,
          variant: str) -> np.ndarray:
    """em-band v3.1's forest fitted on ``Xtr`` (as changed by ``variant``), predicting ``Xte``."""
    scale_tr, scale_te = np.ones(len(ytr)), np.ones(len(Xte))
    if variant == "ion_ratio":
        med = {z: float(np.median(ytr[Xtr[:, ION_Z] == z])) for z in np.unique(Xtr[:, ION_Z])}
        scale_tr = np.array([med[z] for z in Xtr[:, ION_Z]])
        scale_te = np.array([med.get(z, float(np.median(ytr))) for z in Xte[:, ION_Z]])
    if variant == "pca10":
        scaler = StandardScaler().fit(Xtr)
        pca = PCA(10, random_state=0).fit(scaler.transform(Xtr))
        Xtr = np.column_stack([Xtr, pca.transform(scaler.transform(Xtr))])
        Xte = np.column_stack([Xte, pca.transform(scaler.transform(Xte))])
    pred = forest_predict(Xtr, ytr / scale_tr, Xte, share, transform, seed, bootstrap=variant == "bootstrap")
    return pred * scale_te


def boosted(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, seed: int) -> np.ndarray:
    """Gradient-boosted trees on log1p(Em), absolute error (settings fixed, not tuned)."""
    est = HistGradientBoostingRegressor(loss="absolute_error", learning_rate=0.05, max_iter=400,
                                        max_leaf_nodes=15, min_samples_leaf=8, random_state=seed)
    est.fit(Xtr, np.log1p(ytr))
    return np.clip(np.expm1(est.predict(Xte)), 0, None)


def outer_fold(X: np.ndarray, y: np.ndarray, fold: np.ndarray, k: int, seed: int, variant: str) -> tuple[int, np.ndarray, list]:
    """Outer fold ``k``: the inner-CV choice of setting (and blend weight), its test predictions."""
    Xo, yo, fo = X[fold != k], y[fold != k], fold[fold != k]
    inner = np.unique(fo)
    oof: dict[tuple[float, str], np.ndarray] = {}
    for share, tr in itertools.product(SHARES, TRANSFORMS):
        p = np.zeros(len(yo))
        for j in inner:
            p[fo == j] = trees(Xo[fo != j], yo[fo != j], Xo[fo == j], share, tr, seed, variant)
        oof[(share, tr)] = p
    best = min(oof, key=lambda c: float(np.abs(oof[c] - yo).mean()))
    pred = trees(Xo, yo, X[fold == k], *best, seed, variant)
    if variant != "hgb_blend":
        return k, pred, list(best)
    pb = np.zeros(len(yo))
    for j in inner:
        pb[fo == j] = boosted(Xo[fo != j], yo[fo != j], Xo[fo == j], seed)
    w = min(BLEND_WEIGHTS, key=lambda w: float(np.abs((1 - w) * oof[best] + w * pb - yo).mean()))
    return k, (1 - w) * pred + w * boosted(Xo, yo, X[fold == k], seed), [*best, w]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "data" / "models" / "em-band-v3"),
                        help="model directory whose training_set.npz (descriptors, targets, folds) is read")
    parser.add_argument("--seeds", default="0,1,2", help="forest seeds, comma-separated")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--jobs", type=int, default=2, help="outer folds run in parallel (processes)")
    args = parser.parse_args(argv)
    d = np.load(Path(args.model) / "training_set.npz", allow_pickle=False)
    if str(d["feature_names"][ION_Z]) != "ion_Z":
        raise SystemExit("unexpected descriptor layout: column 0 is not ion_Z")
    X, y, fold = d["X"].astype(float), d["y"].astype(float), d["fold"].astype(int)
    rows = []
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}")
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.perf_counter()
            pred = np.zeros(len(y))
            picked = []
            for k, p, choice in Parallel(n_jobs=args.jobs)(delayed(outer_fold)(X, y, fold, k, seed, variant)
                                                           for k in range(int(fold.max()) + 1)):
                pred[fold == k] = p
                picked.append(choice)
            row = {"variant": variant, "seed": seed, "nested_mae": round(float(np.abs(pred - y).mean()), 4),
                   "picked": picked, "seconds": round(time.perf_counter() - t0)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    means = {v: round(float(np.mean([r["nested_mae"] for r in rows if r["variant"] == v])), 4)
             for v in dict.fromkeys(r["variant"] for r in rows)}
    print("mean over seeds:", means)
    record = {"model": str(args.model), "rows": rows, "mean_over_seeds": means}
    (ROOT / "benchmarks" / "results" / "cv_targets_and_blends.json").write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
