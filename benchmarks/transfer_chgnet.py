"""Transfer route for the fast model: does a pretrained universal potential's view of the band help?

Usage::

    python benchmarks/transfer_chgnet.py [--model data/models/em-band-v3] [--threads 1]

In the spirit of the seed paper (an ALIGNN fine-tuned from a pretrained model), this tries the
cheapest transfer from CHGNet 0.3.0 (weights in its wheel): for every training band, CHGNet's
per-atom embedding of the migrating ion (64 floats) and its energy with the ion at the initial
site, at the midpoint image and at the final site. Added to the shipped descriptors as

* ``dE``: CHGNet's unrelaxed straight-path barrier, E(mid) - mean(E(initial), E(final)),
  signed log;
* the ion's embedding at the midpoint minus the end points', 8 principal components (fitted on
  each training fold only);
* the ion's embeddings at the midpoint and at the initial site, 8 principal components;

and scored with the shipped extra-trees procedure on the shipped folds (``max_features`` 0.5,
200 trees). The embeddings are cached by band content in ``~/.cache/screener/chgnet_band_embeddings.npz``
(about 20 min on one core for the 559 bands the first time). Writes
``benchmarks/results/transfer_chgnet.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "em-dataset" / "train_bands.json"
CACHE = Path.home() / ".cache" / "screener" / "chgnet_band_embeddings.npz"


def embeddings(bands: list, threads: int) -> np.ndarray:
    """Per band: ion embedding and energy (eV/atom) at images 0, 2 and 4 (3 x 65 floats), cached."""
    import torch
    from chgnet.model import CHGNet

    from screener.core.hashing import input_fingerprint

    torch.set_num_threads(threads)
    keys = [input_fingerprint(b.structure)[:20] for b in bands]
    cache = dict(np.load(CACHE)) if CACHE.exists() else {}
    missing = [i for i, k in enumerate(keys) if k not in cache]
    if missing:
        model = CHGNet.load(verbose=False)
        t0 = time.perf_counter()
        for n, i in enumerate(missing):
            structs = [bands[i].endpoint(j) for j in (0, 2, 4)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                preds = model.predict_structure(structs, task="e", return_atom_feas=True, batch_size=3)
            cache[keys[i]] = np.concatenate([np.concatenate([p["atom_fea"][0], np.atleast_1d(p["e"])]) for p in preds])
            if n % 25 == 0 or n == len(missing) - 1:
                CACHE.parent.mkdir(parents=True, exist_ok=True)
                np.savez(CACHE, **cache)
                print(f"{n + 1}/{len(missing)} bands embedded, {time.perf_counter() - t0:.0f} s", flush=True)
    return np.stack([cache[k] for k in keys])


def main() -> None:
    from sklearn.decomposition import PCA
    from sklearn.ensemble import ExtraTreesRegressor

    from screener.training.dataset import read_entries
    from screener.training.trainset import TrainingSet

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(HERE.parent / "data" / "models" / "em-band-v3"))
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    ts = TrainingSet.load(args.model)
    entries = [e for e in read_entries(args.data) if e.band is not None and e.target is not None]
    assert np.allclose(ts.y, [e.target for e in entries])
    R = embeddings([e.band for e in entries], args.threads)
    R = np.where(np.isfinite(R), R, np.nanmedian(R, axis=0))  # CHGNet gave NaN on one band
    atom = [R[:, 65 * i:65 * i + 64] for i in range(3)]
    n_atoms = np.array([e.band.num_sites - e.band.n_images + 1 for e in entries])
    energy = [R[:, 65 * i + 64] * n_atoms for i in range(3)]
    d_e = energy[1] - 0.5 * (energy[0] + energy[2])
    sd_e = (np.sign(d_e) * np.log1p(np.abs(d_e)))[:, None]
    y, X = ts.y, ts.X

    def cv(extra: np.ndarray | None = None, pca_of: np.ndarray | None = None) -> float:
        pred = np.zeros(len(y))
        for k in range(ts.n_folds):
            tr, te = ts.fold != k, ts.fold == k
            parts = [X] + ([extra] if extra is not None else [])
            if pca_of is not None:
                parts.append(PCA(8, random_state=0).fit(pca_of[tr]).transform(pca_of))
            F = np.hstack(parts)
            m = ExtraTreesRegressor(n_estimators=200, max_features=0.5, random_state=0, n_jobs=1)
            pred[te] = np.clip(m.fit(F[tr], np.sqrt(y[tr])).predict(F[te]), 0, None) ** 2
        return float(np.mean(np.abs(pred - y)))

    result = {
        "descriptors_only": cv(),
        "plus_chgnet_straight_path_dE": cv(sd_e),
        "plus_dE_and_ion_embedding_mid_minus_ends_pca8": cv(sd_e, atom[1] - 0.5 * (atom[0] + atom[2])),
        "plus_dE_and_ion_embedding_mid_and_initial_pca8": cv(sd_e, np.hstack([atom[1], atom[0]])),
        "plus_ion_embedding_mid_and_initial_pca8": cv(None, np.hstack([atom[1], atom[0]])),
        "spearman_dE_vs_dft": float(__import__("scipy.stats").stats.spearmanr(d_e, y).statistic),
    }
    best = min((v, k) for k, v in result.items() if k != "spearman_dE_vs_dft")
    result["verdict"] = ("a CHGNet feature lowers the CV MAE" if best[1] != "descriptors_only" and
                         best[0] < result["descriptors_only"] - 0.002 else
                         "no CHGNet feature lowers the CV MAE: the fast model stays descriptor trees "
                         "(and CHGNet stays an optional extra)")
    out = HERE / "results" / "transfer_chgnet.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
