"""Cross-validated variants of the refine combination: the softening scale, NEB quality signals.

The shipped combination (:mod:`screener.handoff.combine`) has four fitted parameters: ``a``
(scale of the fast model's uncertainty), ``sigma_neb`` and ``eps`` (the NEB's spread and outlier
probability) and ``scale`` (a softened potential's barriers come out low by a roughly constant
factor; the shipped grid allows 0.8-1). The variants, each fitted on the shipped grid with one
axis changed or added:

* ``unscaled``: no softening scale (the fit before 2026-12-07);
* ``wide_scale``: the scale from 0.7 to 1.1 (stiffer potentials allowed too);
* ``end_max``: a NEB whose highest image is an end point found no saddle; such NEBs get an
  outlier probability of their own (``EPS_END``);
* ``asymmetry``: the NEB's spread grows with the end points' energy difference,
  ``sigma_neb^2 + (k |E(0) - E(N)|)^2`` (``K_ASYM``);
* ``both``: the last two together.

Scored like ``benchmarks/fit_combination.py``: out of fold (5 folds), over several draws of the
folds, against the DFT barriers of the literature entries with a NEB record
(``benchmarks/results/refine_validation_<potential>.csv``) and the shipped model's out-of-fold
predictions.

Usage::

    python benchmarks/cv_combination_variants.py [--seeds 0,1,2,3,4,5,6,7,8,9]

Writes ``benchmarks/results/cv_combination_variants.json``; about 4 minutes for five fold seeds. Needs the training
set (nothing here is held out).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from fit_combination import DEFAULT_DATA, GOOD, RESULTS, out_of_fold

HERE = Path(__file__).resolve().parent
EPS_END = (0.05, 0.2, 0.5, 0.9)
K_ASYM = (0.5, 1.0, 2.0)
#: Axes each variant changes or adds to the shipped grid: ``eps_end`` (outlier probability of
#: end-maximum NEBs; None: ``eps``), ``k`` (asymmetry coefficient), ``scale``.
VARIANTS: dict[str, dict[str, tuple]] = {
    "shipped": {}, "unscaled": {"scale": (1.0,)}, "wide_scale": {"scale": (0.7, 0.8, 0.9, 1.0, 1.1)},
    "end_max": {"eps_end": EPS_END}, "asymmetry": {"k": K_ASYM}, "both": {"eps_end": EPS_END, "k": K_ASYM},
}


def refined(d: pd.DataFrame, a: float, sigma_neb: float, eps: float, eps_end: float | None, k: float,
            scale: float = 1.0) -> np.ndarray:
    """The combination's posterior mean with each entry's NEB spread and outlier probability.

    With ``eps_end=None`` and ``k=0`` it is :meth:`screener.handoff.combine.Combination.combine`
    with the same parameters.
    """
    from screener.handoff.combine import posterior

    sn = np.sqrt(sigma_neb**2 + (k * d["asymmetry_eV"].to_numpy()) ** 2)
    e = np.where(d["end_max"].to_numpy(), eps if eps_end is None else eps_end, eps)
    return posterior(d["fast"], d["sigma"], d["em_eV"], a, sn, e, scale)[0]


def fit(d: pd.DataFrame, variant: str) -> tuple:
    """The grid point with the lowest MAE on ``d``."""
    from screener.handoff.combine import GRID

    axes = VARIANTS[variant]
    best, best_mae = None, np.inf
    for params in itertools.product(GRID["a"], GRID["sigma_neb"], GRID["eps"], axes.get("eps_end", (None,)),
                                    axes.get("k", (0.0,)), axes.get("scale", GRID["scale"])):
        mae = float(np.abs(refined(d, *params) - d["dft"].to_numpy()).mean())
        if mae < best_mae - 1e-12:
            best, best_mae = params, mae
    return best


def out_of_fold_refined(d: pd.DataFrame, variant: str, seed: int) -> np.ndarray:
    """Each fold combined with the parameters fitted on the others (the folds of ``crossvalidate``)."""
    folds = np.random.default_rng(seed).permutation(len(d)) % 5
    out = np.zeros(len(d))
    for k in range(5):
        test = folds == k
        out[test] = refined(d[test], *fit(d[~test], variant))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2,3,4", help="fold seeds")
    ap.add_argument("--model", default=str(HERE.parent / "data" / "models" / "em-band-v3"))
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    args = ap.parse_args()
    from screener.handoff.neb import RefineSettings
    from screener.training.dataset import read_entries

    seeds = [int(x) for x in args.seeds.split(",")]
    entries = [e for e in read_entries(Path(args.data) / "train_bands.json")
               if e.band is not None and e.target is not None]
    y, fast, sigma = out_of_fold(Path(args.model))
    frame = pd.DataFrame({"jid": [str(e.jid) for e in entries], "dft": y, "fast": fast, "sigma": sigma})
    out: dict = {"seeds": seeds, "potentials": {}}
    for path in sorted(RESULTS.glob("refine_validation_*.csv")):
        name = path.stem.removeprefix("refine_validation_")
        v = pd.read_csv(path)
        v = v[v["status"] == "ok"].assign(jid=lambda t: t["jid"].astype(str))
        d = frame.merge(v, on="jid")
        last = RefineSettings().n_intermediate + 1  # the records are of the default settings
        d["end_max"] = (d["saddle_index"] == 0) | (d["saddle_index"] == last)
        fast_err = np.abs(d["fast"] - d["dft"])
        good = d["dft"].to_numpy() < GOOD
        rec = {"n": len(d), "end_max": int(d["end_max"].sum()),
               "fast": {"mae": float(fast_err.mean()), "gt_1eV": int((fast_err > 1).sum()),
                        "acc_good": float(((d["fast"].to_numpy() < GOOD) == good).mean())}, "variants": {}}
        for variant in VARIANTS:
            preds = [out_of_fold_refined(d, variant, s) for s in seeds]
            errs = [np.abs(p - d["dft"].to_numpy()) for p in preds]
            rec["variants"][variant] = {"mae": [float(e.mean()) for e in errs],
                                        "gt_1eV": [int((e > 1).sum()) for e in errs],
                                        "acc_good": [round(float(((p < GOOD) == good).mean()), 3) for p in preds],
                                        "fit_all": [float(x) if x is not None else None for x in fit(d, variant)]}
            print(name, variant, rec["variants"][variant], flush=True)
        out["potentials"][name] = rec
    (RESULTS / "cv_combination_variants.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
