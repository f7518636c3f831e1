"""``screener train``: k-fold training, cross-validated metrics and a shippable model directory."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from screener.cli.options import EXIT_OK, EXIT_USAGE, HelpFormatter
from screener.core.errors import ScreenerError

log = logging.getLogger("screener.train")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = sub.add_parser(
        "train",
        formatter_class=HelpFormatter,
        help="train the band model by k-fold cross-validation and write a model directory",
        description=(
            "Train one band graph model per fold (folds drawn at random within each structural "
            "class), a descriptor tree model on the same folds, choose their blend on the "
            "out-of-fold predictions, and write the fold ensemble with its CV metrics and model card."
        ),
    )
    p.add_argument("--data", required=True,
                   help="dataset JSON (band or end-point form) or a folder holding train_bands.json")
    p.add_argument("--out", required=True, help="output model directory (created; resumes fold weights)")
    p.add_argument("--config", help="JSON file with 'model', 'graph', 'train', 'boosting', 'forest' sections")
    p.add_argument("--folds", type=int, help="number of folds (default 5)")
    p.add_argument("--epochs", type=int, help="override the largest number of epochs")
    p.add_argument("--limit", type=int, help="use only the first N entries (smoke tests)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to train: auto uses CUDA when present")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--cache", help="folder to cache band graphs between runs (default: in memory)")
    p.add_argument("--name", default="em-band", help="model name written to model.json")
    p.add_argument("--model-version", default="1", help="model version written to model.json")
    p.add_argument("--no-trees", action="store_true", help="ship the graph ensemble alone")
    p.add_argument("--no-graph", action="store_true",
                   help="train no graph members: the descriptor trees alone (em-band v3; no torch training)")
    p.set_defaults(func=run)


def _dataset_path(path: Path) -> Path:
    return path / "train_bands.json" if path.is_dir() else path


def _index_baselines(data: Path, oof: pd.DataFrame) -> dict:
    """Metrics of the MACE-MP-0 barriers tabulated in ``train_index.csv`` beside the data, if any.

    These are physics-based peers computed outside this project (from the source tabulation);
    entries without a value are left out and the count says so.
    """
    from screener.training.metrics import regression_metrics

    index = data.parent / "train_index.csv"
    if not index.exists():
        return {}
    try:
        idx = pd.read_csv(index)
    except Exception as exc:  # noqa: BLE001 - a baseline must never sink training
        log.warning("cannot read %s: %s", index, exc)
        return {}
    idx["jid"] = idx["jid"].astype(str)
    merged = oof.merge(idx, on="jid", how="left")
    out = {}
    for col, name in [("MACE_relax_eV", "MACE-MP-0 NEB, relaxed (source table)"),
                      ("MACE_norelax_eV", "MACE-MP-0 NEB, unrelaxed (source table)")]:
        if col in merged:
            ok = merged[col].notna()
            if ok.sum() > 1:
                out[name] = regression_metrics(merged.loc[ok, "target"].to_numpy(), merged.loc[ok, col].to_numpy())
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``screener train``; returns the exit code."""
    import torch

    from screener.model.graphs import GraphCache
    from screener.model.predictor import BandPredictor
    from screener.training.card import write_model_card
    from screener.training.crossval import (
        choose_blend_weight,
        crossfit_blend,
        run_folds,
        tree_folds,
    )
    from screener.training.dataset import read_entries
    from screener.training.metrics import class_stratified_folds, regression_metrics
    from screener.training.trainer import ExperimentConfig
    from screener.training.trainset import training_set_of

    data = _dataset_path(Path(args.data))
    try:
        cfg_dict = json.loads(Path(args.config).read_text()) if args.config else {}
    except (OSError, json.JSONDecodeError) as exc:
        log.error("cannot read config %s: %s", args.config, exc)
        return EXIT_USAGE
    if args.folds:
        cfg_dict["n_folds"] = args.folds
    if args.epochs:
        cfg_dict.setdefault("train", {})["epochs"] = args.epochs
    if args.threads:
        cfg_dict.setdefault("train", {})["threads"] = args.threads
    if args.no_trees and args.no_graph:
        log.error("--no-trees and --no-graph leave no model")
        return EXIT_USAGE
    if args.no_trees:
        cfg_dict["use_trees"] = False
    if args.no_graph:
        cfg_dict["use_graph"] = False
    config = ExperimentConfig.from_dict(cfg_dict)
    if not (config.use_graph or config.use_trees):
        log.error("the configuration trains neither graph members nor trees: no model")
        return EXIT_USAGE
    if config.n_folds < 2:
        log.error("--folds must be at least 2")
        return EXIT_USAGE
    try:
        entries = read_entries(data)
    except ScreenerError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    bad = [e for e in entries if e.band is None or e.target is None]
    for e in bad:
        log.warning("entry %s skipped: %s", e.jid, e.error or "no target")
    entries = [e for e in entries if e.band is not None and e.target is not None]
    if args.limit:
        entries = entries[: args.limit]
    if len(entries) < config.n_folds:
        log.error("%d usable entries: too few for %d folds", len(entries), config.n_folds)
        return EXIT_USAGE
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=1))
    t0 = time.perf_counter()
    folds = class_stratified_folds([e.label for e in entries], config.n_folds, config.fold_seed)
    members = []
    if config.use_graph:
        oof = run_folds(entries, config, out / "folds", GraphCache(config.graph, args.cache), device=device)
        from screener.model.alignn import BandALIGNN
        from screener.training.crossval import fold_member_path

        for k in range(config.n_folds):
            m = BandALIGNN(config.model)
            m.load_state_dict(torch.load(fold_member_path(out / "folds", k), weights_only=True))
            members.append(m.eval())
    else:
        oof = pd.DataFrame({"jid": [e.jid for e in entries], "fold": folds,
                            "target": [e.target for e in entries], "pred": np.nan})
    y = oof["target"].to_numpy(dtype=float)
    graph = oof["pred"].to_numpy(dtype=float)
    tree_models, w = [], 1.0
    fold_weights: list[float] = []
    trees = np.full_like(graph, np.nan)
    features = None
    blend = graph
    if config.use_trees:
        from screener.model.descriptors import FEATURE_VERSION, feature_matrix

        features = feature_matrix([e.band for e in entries])
        trees, tree_models, per_kind, within = tree_folds(entries, config, features)
        # Shipped weight: chosen on all out-of-fold predictions. Reported metrics: each fold
        # blended with the weight chosen on the other folds, so no entry scores its own choice.
        if members:
            w = choose_blend_weight(y, graph, trees)
            blend, fold_weights = crossfit_blend(y, graph, trees, folds)
        else:
            w, blend = 0.0, trees
    oof["pred_graph"] = graph
    oof["pred_trees"] = trees
    oof["pred"] = blend
    # The mean baseline on the same folds.
    oof["pred_mean_baseline"] = [y[folds != f].mean() for f in folds]
    metrics = {
        "blend": regression_metrics(y, blend),
        **({"graph_only": regression_metrics(y, graph)} if members else {}),
        "mean_baseline": regression_metrics(y, oof["pred_mean_baseline"].to_numpy()),
        "per_fold_mae": [float(np.mean(np.abs(blend[folds == k] - y[folds == k])))
                         for k in range(config.n_folds)],
    }
    if tree_models:
        metrics["trees_only"] = regression_metrics(y, trees)
        # Out of fold each entry has one graph model and one tree model of each kind, so the
        # uncertainty there is the mixture spread without the fold-to-fold part.
        unc = np.sqrt((1 - w) * (per_kind.var(axis=0) + within)
                      + w * (1 - w) * np.nan_to_num(graph - trees) ** 2)
        oof["uncertainty_between_models"] = unc
        metrics["uncertainty_spearman_vs_abs_error"] = float(spearmanr(unc, np.abs(blend - y)).statistic)
    baselines = _index_baselines(data, oof)
    if baselines:
        metrics["baselines"] = baselines
    metrics["graph_weight"] = w
    if fold_weights:
        metrics["graph_weight_per_fold"] = fold_weights
    metrics["n_entries"] = len(entries)
    metrics["train_seconds"] = time.perf_counter() - t0
    oof.to_csv(out / "oof_predictions.csv", index=False)
    (out / "cv_metrics.json").write_text(json.dumps(metrics, indent=1))
    info = {
        "name": args.name,
        "version": args.model_version,
        "trained_on": str(data.name),
        "n_train": len(entries),
        "cv": metrics,
        "train_config": config.to_dict(),
    }
    if tree_models:
        info["descriptor_feature_version"] = FEATURE_VERSION
        # each member's settings (the nested CV's choice per fold): what `screener learn` refits with
        info["tree_params"] = [{"transform": m.transform, **({"aggregate": m.aggregate} if hasattr(m, "aggregate") else {}),
                                **m.params} for m in tree_models]
    predictor = BandPredictor(members, config.graph, tree_models, w, info)
    predictor.save(out)
    if tree_models:  # what `screener learn` refits the trees with (descriptors, targets, folds)
        training_set_of(entries, config.n_folds, config.fold_seed).save(out)
    write_model_card(out)
    m = metrics["blend"]
    log.info("CV (%d folds, %d entries): MAE %.3f eV, RMSE %.3f, R2 %.3f, Spearman %.3f; graph weight %.2f",
             config.n_folds, len(entries), m["mae"], m["rmse"], m["r2"], m["spearman"], w)
    log.info("model written to %s", out)
    return EXIT_OK
