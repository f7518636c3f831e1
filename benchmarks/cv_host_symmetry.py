"""Nested CV: does the host's symmetry add to em-band v3.1's descriptors? (tried; not shipped)

The results in ``benchmarks/results/`` were recorded against em-band v3.1 (descriptors v2); run again,
the script reads the shipped model's training set, descriptors v3 since em-band v3.2.

The descriptors describe the hop and its neighbourhood; nothing in them names the framework
(spinel, olivine, layered...). This adds two numbers computable from any band: the space group of
the band's host with the ion at both end points (spglib through pymatgen, ``symprec`` 0.3 Å, so the
relaxed DFT supercells of the literature mostly recover their ideal group), and its crystal system
(0 triclinic ... 6 cubic). Both variants run the shipped grid less its ``aggregate`` axis
(``max_features`` x ``transform``, always the median of the trees, which every shipped fold
picked) with the same outer folds and the same inner folds as ``screener train``,
over several forest seeds: a single seed's nested MAE moves by ~0.001-0.002 eV with the seed alone.

Usage::

    python benchmarks/cv_host_symmetry.py [--seeds 0,1,2,3,4] [--data ../shared/data/em-dataset]

Writes ``benchmarks/results/cv_host_symmetry.json``. About 20 s for the symmetry of the 559 bands
and 3-4 minutes per seed on 2 cores. Needs the training set (nothing here is held out).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from joblib import Parallel, delayed

if TYPE_CHECKING:
    from screener.core.band import Band

ROOT = Path(__file__).resolve().parents[1]
SHARES = (0.5, 0.7, 1.0)
TRANSFORMS = ("sqrt", "log1p")
#: Last space-group number of each crystal system, triclinic to hexagonal (cubic: the rest).
SYSTEM_ENDS = (2, 15, 74, 142, 167, 194)


def host_symmetry(band: Band, symprec: float = 0.3) -> tuple[float, float]:
    """Space-group number and crystal system (0-6) of a band's host with the ion at both end points."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    s = band.host.copy()
    frac = band.image_frac_coords
    s.append(band.ion, frac[0])
    s.append(band.ion, frac[-1])
    try:
        number = SpacegroupAnalyzer(s, symprec=symprec, angle_tolerance=5).get_space_group_number()
    except Exception:  # noqa: BLE001 - spglib gives up on a few distorted cells: no symmetry
        number = 1
    return float(number), float(np.searchsorted(SYSTEM_ENDS, number))


def forest_predict(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, share: float, transform: str,
                   seed: int, **params: Any) -> np.ndarray:
    """em-band v3.1's forest (:class:`ForestModel`, median of 200 extra-trees) fitted on ``Xtr``.

    Args:
        Xtr, ytr: training descriptors (any number of columns) and barriers (eV).
        Xte: descriptors to predict.
        share, transform: ``max_features`` and the target transform.
        seed: the forest's random seed.
        **params: other ``ExtraTreesRegressor`` settings (e.g. ``bootstrap``).
    """
    from screener.model.trees import ForestModel

    model = ForestModel(transform=transform, aggregate="median", max_features=share, random_state=seed, **params)
    model.feature_names = [f"x{i}" for i in range(Xtr.shape[1])]  # descriptors plus the variant's columns
    return model.fit(Xtr, ytr).predict(Xte)


def _outer(X: np.ndarray, y: np.ndarray, fold: np.ndarray, k: int, seed: int) -> tuple[int, np.ndarray, tuple]:
    """Fold ``k``: the grid setting with the lowest inner-CV MAE, and its outer-test predictions."""
    Xo, yo, fo = X[fold != k], y[fold != k], fold[fold != k]
    scores = {}
    for share, tr in itertools.product(SHARES, TRANSFORMS):
        scores[(share, tr)] = sum(float(np.abs(forest_predict(Xo[fo != j], yo[fo != j], Xo[fo == j], share, tr, seed)
                                               - yo[fo == j]).sum()) for j in np.unique(fo)) / len(yo)
    best = min(scores, key=scores.get)
    return k, forest_predict(Xo, yo, X[fold == k], *best, seed), best


def nested_mae(X: np.ndarray, y: np.ndarray, fold: np.ndarray, seed: int, jobs: int = 2) -> tuple[float, list]:
    """Nested-CV MAE of the shipped grid on descriptors ``X`` with forest seed ``seed``."""
    pred = np.zeros(len(y))
    picked = []
    for k, p, best in Parallel(n_jobs=jobs)(delayed(_outer)(X, y, fold, k, seed) for k in range(int(fold.max()) + 1)):
        pred[fold == k] = p
        picked.append(list(best))
    return float(np.abs(pred - y).mean()), picked


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from screener.training.dataset import read_entries

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "data" / "models" / "em-band-v3"),
                        help="model directory whose training_set.npz (descriptors, targets, folds) is read")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "em-dataset"))
    parser.add_argument("--seeds", default="0,1,2,3,4", help="forest seeds, comma-separated")
    parser.add_argument("--jobs", type=int, default=2, help="outer folds run in parallel (processes)")
    args = parser.parse_args(argv)
    d = np.load(Path(args.model) / "training_set.npz", allow_pickle=False)
    X, y, fold = d["X"].astype(float), d["y"].astype(float), d["fold"].astype(int)
    entries = [e for e in read_entries(Path(args.data) / "train_bands.json") if e.band is not None and e.target is not None]
    if not np.allclose(y, [e.target for e in entries]):
        raise SystemExit("the model's training rows are not the dataset's entries")
    t0 = time.perf_counter()
    sym = np.array([host_symmetry(e.band) for e in entries])
    print(f"host symmetry of {len(entries)} bands: {time.perf_counter() - t0:.0f} s; "
          f"P1 for {int((sym[:, 0] == 1).sum())}", flush=True)
    variants = {"descriptors v2 (shipped)": X, "+ host space group and crystal system": np.column_stack([X, sym])}
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for name, XX in variants.items():
            mae, picked = nested_mae(XX, y, fold, seed, args.jobs)
            rows.append({"seed": seed, "variant": name, "nested_mae": round(mae, 4), "picked": picked})
            print(f"seed {seed} {name}: nested MAE {mae:.4f}", flush=True)
    summary = {name: round(float(np.mean([r["nested_mae"] for r in rows if r["variant"] == name])), 4)
               for name in variants}
    print("mean over seeds:", summary)
    record = {"model": str(args.model), "symprec": 0.3, "rows": rows, "mean_over_seeds": summary}
    (ROOT / "benchmarks" / "results" / "cv_host_symmetry.json").write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
