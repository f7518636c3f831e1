"""Nested CV of forest variants against em-band v3.1's grid, on the descriptors the model carries.

The results in ``benchmarks/results/`` were recorded against em-band v3.1 (descriptors v2); run again,
the script reads the shipped model's training set, descriptors v3 since em-band v3.2.

Reads ``training_set.npz`` of a model directory (descriptors v2, targets and the 5 outer folds of
``screener train``), so it needs neither the dataset nor the descriptor code. The inner CV of each
outer fold runs over that fold's other 4 folds, as ``screener train`` does; a setting is picked per
outer fold by inner-CV MAE and scored on the outer test fold. Variants (extra-trees, 200 trees):

* ``aggregate``: the mean or median of the trees (as shipped), a quantile-regression-forest
  weighted median of the training targets in the leaves (Meinshausen 2006), and the median of
  per-leaf medians; each with ``min_samples_leaf`` in ``--leaves``;
* ``pooled``: the trees grown on sqrt(Em) and on log1p(Em) pooled into one median;
* ``--seeds``: the forest's random seed, to size how much of the MAE is the seed's.

Usage::

    python benchmarks/cv_forest_variants.py [--model DIR] [--leaves 1,3] [--seeds 0,1,2]

Prints one line per grid (its nested MAE and the setting picked in each fold) and writes
``benchmarks/results/cv_forest_variants.json``. About 2 minutes per seed and 2 for the leaf
grid on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import ExtraTreesRegressor

ROOT = Path(__file__).resolve().parents[1]
SHARES = (0.5, 0.7, 1.0)
TRANSFORMS = ("sqrt", "log1p")
FORWARD = {"sqrt": lambda v: np.sqrt(np.clip(v, 0, None)), "log1p": lambda v: np.log1p(np.clip(v, 0, None))}


def _weighted_median(w: np.ndarray, y: np.ndarray) -> np.ndarray:
    order = np.argsort(y)
    cw = np.cumsum(w[:, order], axis=1)
    return y[order][(cw < cw[:, -1:] / 2).sum(axis=1)]


def fit_predict(Xtr, ytr, Xte, share: float, transform: str, leaf: int, seed: int) -> dict[str, np.ndarray]:
    """Every aggregate of one forest, and the trees' barriers (test rows x trees)."""
    est = ExtraTreesRegressor(n_estimators=200, min_samples_leaf=leaf, max_features=share, random_state=seed,
                              n_jobs=1).fit(Xtr, FORWARD[transform](ytr))
    inverse = (lambda r: np.square(np.clip(r, 0, None))) if transform == "sqrt" else (
        lambda r: np.clip(np.expm1(r), 0, None))
    Ltr, Lte = est.apply(Xtr), est.apply(Xte)
    raw = np.stack([t.tree_.value[Lte[:, i], 0, 0] for i, t in enumerate(est.estimators_)], axis=1)
    out = {"mean": inverse(raw.mean(1)), "median": inverse(np.median(raw, 1)), "trees": inverse(raw)}
    w = np.zeros((len(Xte), len(Xtr)))
    leaf_median = np.zeros_like(raw)
    for t in range(Ltr.shape[1]):
        same = Lte[:, t][:, None] == Ltr[:, t][None, :]
        w += same / same.sum(1, keepdims=True)
        for node in np.unique(Lte[:, t]):
            leaf_median[Lte[:, t] == node, t] = np.median(ytr[Ltr[:, t] == node])
    out["qrf"] = _weighted_median(w, ytr)
    out["leaf_median"] = np.median(leaf_median, 1)
    return out


def outer_fold(X, y, fold, k: int, leaves: list[int], seed: int) -> tuple[int, dict, dict]:
    """Inner-CV MAE of every (setting, aggregate) and its outer-test predictions, for fold ``k``."""
    Xo, yo, fo = X[fold != k], y[fold != k], fold[fold != k]
    combos = list(itertools.product(SHARES, TRANSFORMS, leaves))
    inner: dict = {}
    inner_trees: dict = {}
    for c in combos:
        err: dict[str, float] = {}
        for j in np.unique(fo):
            p = fit_predict(Xo[fo != j], yo[fo != j], Xo[fo == j], *c, seed)
            inner_trees[(c, j)] = p.pop("trees")
            for a, v in p.items():
                err[a] = err.get(a, 0.0) + float(np.abs(v - yo[fo == j]).sum())
        for a, e in err.items():
            inner[(c, a)] = e / len(yo)
    outer = {c: fit_predict(Xo, yo, X[fold == k], *c, seed) for c in combos}
    for share, leaf in itertools.product(SHARES, leaves):  # both transforms' trees in one median
        c = (share, "pooled", leaf)
        inner[(c, "median")] = sum(
            float(np.abs(np.median(np.hstack([inner_trees[((share, t, leaf), j)] for t in TRANSFORMS]), 1)
                         - yo[fo == j]).sum()) for j in np.unique(fo)) / len(yo)
        outer[c] = {"median": np.median(np.hstack([outer[(share, t, leaf)]["trees"] for t in TRANSFORMS]), 1)}
    return k, inner, outer


def nested(results, y, fold, allow) -> tuple[float, list]:
    """Nested MAE when each outer fold picks, by inner CV, among the (setting, aggregate) ``allow`` keeps."""
    pred = np.zeros(len(y))
    picked = []
    for k, inner, outer in results:
        best = min((key for key in inner if allow(*key)), key=lambda key: inner[key])
        picked.append([*best[0], best[1]])
        pred[fold == k] = outer[best[0]][best[1]]
    return float(np.abs(pred - y).mean()), picked


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "data" / "models" / "em-band-v3"),
                        help="model directory whose training_set.npz is read (default: the shipped model)")
    parser.add_argument("--leaves", default="1,3", help="min_samples_leaf values, comma-separated (default 1,3)")
    parser.add_argument("--seeds", default="0", help="forest seeds, comma-separated (default 0, the shipped one)")
    args = parser.parse_args(argv)
    d = np.load(Path(args.model) / "training_set.npz", allow_pickle=False)
    X, y, fold = d["X"].astype(float), d["y"].astype(float), d["fold"].astype(int)
    leaves = [int(v) for v in args.leaves.split(",")]
    grids = {
        "shipped (mean|median, leaf 1)": lambda c, a: c[1] != "pooled" and c[2] == 1 and a in ("mean", "median"),
        "shipped + leaf sizes": lambda c, a: c[1] != "pooled" and a in ("mean", "median"),
        "+ quantile-regression forest": lambda c, a: c[1] != "pooled" and a in ("mean", "median", "qrf"),
        "+ median of leaf medians": lambda c, a: c[1] != "pooled",
        "shipped + pooled transforms": lambda c, a: c[2] == 1 and a in ("mean", "median"),
    }
    record = {"model": str(args.model), "leaves": leaves, "rows": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.perf_counter()
        res = Parallel(n_jobs=2)(delayed(outer_fold)(X, y, fold, k, leaves, seed) for k in range(int(fold.max()) + 1))
        for name, allow in grids.items():
            mae, picked = nested(res, y, fold, allow)
            record["rows"].append({"seed": seed, "grid": name, "nested_mae": round(mae, 4), "picked": picked})
            print(f"seed {seed} {name}: nested MAE {mae:.4f}  picked {picked}", flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    out = ROOT / "benchmarks" / "results" / "cv_forest_variants.json"
    out.write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
