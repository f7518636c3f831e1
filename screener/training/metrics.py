"""Metrics of barrier predictions, as reported in the model card."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

GOOD_CONDUCTOR_EV = 0.65


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, threshold: float = GOOD_CONDUCTOR_EV
) -> dict[str, float]:
    """Error and classification metrics of predicted barriers.

    Args:
        y_true: reference barriers in eV.
        y_pred: predicted barriers in eV.
        threshold: a "good conductor" has Em below this (eV).

    Returns:
        ``mae``, ``rmse``, ``r2``, ``spearman``, ``frac_abs_err_lt_0.1``,
        ``frac_abs_err_0.1_0.3``, and ``good_accuracy``/``good_precision``/``good_recall``.
    """
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if y.shape != p.shape or y.size == 0:
        raise ValueError("y_true and y_pred must be non-empty and of the same shape")
    err = p - y
    abs_err = np.abs(err)
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    true_good = y < threshold
    pred_good = p < threshold
    tp = int(np.sum(true_good & pred_good))
    rho = spearmanr(y, p).statistic if y.size > 1 else float("nan")
    return {
        "n": int(y.size),
        "mae": float(abs_err.mean()),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": float(1.0 - ss_res / ss_tot) if ss_tot > 0 else float("nan"),
        "spearman": float(rho),
        "frac_abs_err_lt_0.1": float(np.mean(abs_err < 0.1)),
        "frac_abs_err_0.1_0.3": float(np.mean((abs_err >= 0.1) & (abs_err < 0.3))),
        "good_accuracy": float(np.mean(true_good == pred_good)),
        "good_precision": float(tp / pred_good.sum()) if pred_good.sum() else float("nan"),
        "good_recall": float(tp / true_good.sum()) if true_good.sum() else float("nan"),
    }


def class_stratified_folds(classes: list[str], n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Assign entries to folds at random within each structural class (the paper's way).

    Within each class the members are shuffled and dealt round-robin over the folds, starting at
    a random fold, so every class is spread over the folds as evenly as its size allows.

    Args:
        classes: the structural class label of each entry.
        n_folds: number of folds.
        seed: random seed.

    Returns:
        Integer fold index per entry.
    """
    rng = np.random.default_rng(seed)
    classes = [str(c).strip().upper() for c in classes]
    folds = np.empty(len(classes), dtype=int)
    counts = np.zeros(n_folds, dtype=int)
    for cls in sorted(set(classes)):
        members = np.array([i for i, c in enumerate(classes) if c == cls])
        rng.shuffle(members)
        # Start dealing at the currently smallest folds to balance fold sizes overall.
        order = np.argsort(counts + rng.random(n_folds) * 0.1, kind="stable")
        for j, idx in enumerate(members):
            f = order[j % n_folds]
            folds[idx] = f
            counts[f] += 1
    return folds
