"""Nested cross-validation of the extra-trees settings shipped in :class:`screener.model.trees.ForestModel`.

The outer folds are the project's (5 folds random within each structural class, seed 0). Inside
each outer training fold, an inner 4-fold class-stratified CV (seed 1) picks one setting from a
grid; the picked setting is refit on the whole outer training fold and scored on the outer test
fold. The pooled outer predictions are an honest estimate of "extra-trees tuned by inner CV";
every fixed setting of the grid is also scored on the outer folds for reference (those rows are
*not* a selected result: picking the best of them would be tuning on the test folds).

Two searches, run one after the other (the first fixed the leaf size for the second):

* ``leaf``: leaf size 1/2/3 x share of features per split 0.2/0.3/0.4/0.6, target log1p(Em);
* ``transform``: target log1p / sqrt / none x share 0.3/0.6/1.0, leaf size 1.

Usage::

    python benchmarks/cv_trees.py [--data DIR] [--search leaf|transform|both]

Writes ``benchmarks/results/cv_trees.json`` (metrics and the setting picked in each fold; no
per-entry predictions). About 3 minutes per search on 2 cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import collections
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.cv_baselines import load_features  # noqa: E402
from screener.model.trees import ForestModel  # noqa: E402
from screener.training.dataset import read_entries  # noqa: E402
from screener.training.metrics import class_stratified_folds, regression_metrics  # noqa: E402

N_FOLDS, FOLD_SEED, INNER_FOLDS, INNER_SEED = 5, 0, 4, 1

SEARCHES: dict[str, list[dict[str, Any]]] = {
    "leaf": [dict(transform="log1p", min_samples_leaf=leaf, max_features=share)
             for leaf, share in itertools.product((1, 2, 3), (0.2, 0.3, 0.4, 0.6))],
    "transform": [dict(transform=t, min_samples_leaf=1, max_features=share)
                  for t, share in itertools.product(("log1p", "sqrt", "none"), (0.3, 0.6, 1.0))],
}


def fit_predict(setting: dict[str, Any], Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray) -> np.ndarray:
    """Fit a :class:`ForestModel` with ``setting`` and predict ``Xte``."""
    return ForestModel(**setting).fit(Xtr, ytr).predict(Xte)


def nested(X: np.ndarray, y: np.ndarray, labels: np.ndarray, grid: list[dict[str, Any]]) -> dict[str, Any]:
    """Outer predictions of the inner-CV-picked setting, and of every fixed setting."""
    folds = class_stratified_folds(list(labels), N_FOLDS, FOLD_SEED)
    picked_pred = np.zeros(len(y))
    fixed = np.zeros((len(grid), len(y)))
    picked: list[str] = []
    for k in range(N_FOLDS):
        tr, te = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        inner = class_stratified_folds(list(labels[tr]), INNER_FOLDS, INNER_SEED)
        scores = []
        for i, setting in enumerate(grid):
            p = np.zeros(len(tr))
            for g in range(INNER_FOLDS):
                a, b = inner != g, inner == g
                p[b] = fit_predict(setting, X[tr][a], y[tr][a], X[tr][b])
            scores.append(float(np.mean(np.abs(p - y[tr]))))
            fixed[i, te] = fit_predict(setting, X[tr], y[tr], X[te])
        best = int(np.argmin(scores))
        picked.append(json.dumps(grid[best], sort_keys=True))
        picked_pred[te] = fixed[best, te]
        print(f"fold {k}: picked {grid[best]} (inner MAE {scores[best]:.4f})", flush=True)
    return {
        "nested": regression_metrics(y, picked_pred),
        "picked_per_fold": [json.loads(p) for p in picked],
        "picked_counts": dict(collections.Counter(picked)),
        "fixed_settings_for_reference": [
            {"setting": s, "mae": regression_metrics(y, fixed[i])["mae"]} for i, s in enumerate(grid)
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the searches; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "em-dataset"),
                    help="dataset folder or train_bands.json")
    ap.add_argument("--search", choices=[*SEARCHES, "both"], default="both", help="which grid(s) to run")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cv_trees.json"))
    args = ap.parse_args(argv)
    data = Path(args.data)
    entries = [e for e in read_entries(data / "train_bands.json" if data.is_dir() else data)
               if e.band is not None and e.target is not None]
    features, _ = load_features(entries, REPO / ".cache" / "descriptors_v1.parquet", use_cache=True)
    X = features.to_numpy(dtype=float)
    y = np.array([e.target for e in entries], dtype=float)
    labels = np.array([e.label for e in entries])
    out: dict[str, Any] = {"n_entries": len(y), "outer": f"{N_FOLDS} folds within class, seed {FOLD_SEED}",
                           "inner": f"{INNER_FOLDS} folds within class, seed {INNER_SEED}"}
    for name in SEARCHES if args.search == "both" else [args.search]:
        t0 = time.perf_counter()
        out[name] = nested(X, y, labels, SEARCHES[name])
        out[name]["seconds"] = round(time.perf_counter() - t0, 1)
        m = out[name]["nested"]
        print(f"{name}: nested MAE {m['mae']:.4f} R2 {m['r2']:.3f}; picked {out[name]['picked_counts']}")
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
