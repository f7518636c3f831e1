"""Does each member of the fast model earn its place? Cross-validated ablation on the same folds.

Usage::

    python benchmarks/ablation.py --graph-model DIR_WITH_GRAPH_MEMBERS [--trees-model data/models/em-band-v3]

Out-of-fold predictions of every member on the folds the models were trained on: the descriptor
trees (from ``oof_predictions.csv`` of the tree model: nested CV, see its card) and the graph
ensemble (member k of a model with graph members, e.g. em-band v2 of screener 0.3, predicts fold k,
the fold it was not trained on). Blends are scored with the weight chosen on the other folds
(``crossfit_blend``), so no entry scores its own choice. A member earns its place when removing it
worsens the MAE beyond resampling noise: the 95 % interval of a paired bootstrap over entries of
MAE(without) - MAE(with) lies above 0. Writes ``benchmarks/results/ablation.json``.
Needs the training set (``--data``, default ``../shared/data/em-dataset``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "em-dataset" / "train_bands.json"


def graph_members(d: Path) -> tuple[list, object, str]:
    """The graph members of a model directory (its tree models, of any descriptor version, are not read)."""
    import torch

    from screener.model.alignn import BandALIGNN, BandModelConfig
    from screener.model.graphs import GraphConfig

    meta = json.loads((d / "model.json").read_text())
    state = torch.load(d / "weights.pt", map_location="cpu", weights_only=True)
    cfg = BandModelConfig.from_dict(meta["model"])
    members = []
    for i in range(int(meta["n_members"])):
        m = BandALIGNN(cfg)
        m.load_state_dict(state[f"member{i}"])
        members.append(m.eval())
    return members, GraphConfig(**meta["graph"]), f"{meta['name']}@{meta['version']}"


def main() -> None:
    import torch

    from screener.model.graphs import GraphCache
    from screener.model.inference import predict_pairs
    from screener.training.crossval import crossfit_blend
    from screener.training.dataset import read_entries
    from screener.training.metrics import class_stratified_folds, regression_metrics

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph-model", required=True, help="model directory with graph members (one per fold)")
    p.add_argument("--trees-model", default=str(HERE.parent / "data" / "models" / "em-band-v3"))
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    entries = [e for e in read_entries(args.data) if e.band is not None and e.target is not None]
    folds = class_stratified_folds([e.label for e in entries], 5, 0)
    y = np.array([e.target for e in entries])
    oof = pd.read_csv(Path(args.trees_model) / "oof_predictions.csv")
    assert [str(j) for j in oof["jid"]] == [str(e.jid) for e in entries], "tree OOF rows are not the dataset's entries"
    trees = oof["pred_trees"].to_numpy(dtype=float)
    members, graph_config, version = graph_members(Path(args.graph_model))
    cache = GraphCache(graph_config)
    graph = np.full(len(entries), np.nan)
    for k, member in enumerate(members):
        idx = np.flatnonzero(folds == k)
        graph[idx] = predict_pairs(member, [cache.get(entries[i].band) for i in idx])
    blend, weights = crossfit_blend(y, graph, trees, folds)
    result = {
        "trees_model": str(args.trees_model), "graph_model": f"{version} ({args.graph_model})",
        "trees_only": regression_metrics(y, trees),
        "graph_only": regression_metrics(y, graph),
        "trees_plus_graph_crossfit": regression_metrics(y, blend),
        "graph_weight_per_fold": weights,
    }
    # Paired bootstrap over entries of MAE(trees alone) - MAE(trees + graph): a member earns its
    # place only when removing it makes the MAE worse beyond what resampling the entries explains.
    rng = np.random.default_rng(0)
    d = np.abs(trees - y) - np.abs(blend - y)
    boot = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(2000)])
    lo, hi = np.quantile(boot, [0.025, 0.975])
    result["removing_graph_worsens_mae_by"] = {"mean": float(d.mean()), "ci95": [float(lo), float(hi)]}
    result["verdict"] = ("the graph members lower the CV MAE beyond resampling noise: keep them" if lo > 0 else
                         "removing the graph members does not worsen the CV MAE beyond resampling noise "
                         f"({d.mean():+.4f} eV, 95% CI {lo:+.4f} to {hi:+.4f}): the default model is the trees")
    out = HERE / "results" / "ablation.json"
    out.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: (v["mae"] if isinstance(v, dict) and "mae" in v else v) for k, v in result.items()}, default=float))


if __name__ == "__main__":
    main()
