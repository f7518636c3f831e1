"""Model card (markdown) of a model directory, rendered from its ``model.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from screener.model.trees import BoostingModel, ForestModel

_METRIC_COLUMNS = [
    ("mae", "MAE (eV)"), ("rmse", "RMSE (eV)"), ("r2", "R²"), ("spearman", "Spearman"),
    ("frac_abs_err_lt_0.1", "share abs err < 0.1"), ("frac_abs_err_0.1_0.3", "share 0.1-0.3"),
    ("good_accuracy", "acc@0.65"), ("good_precision", "prec@0.65"), ("good_recall", "rec@0.65"),
]


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table of named metric dictionaries."""
    head = "| model | n | " + " | ".join(c for _, c in _METRIC_COLUMNS) + " |"
    sep = "|---" * (len(_METRIC_COLUMNS) + 2) + "|"
    lines = [head, sep]
    for name, m in rows.items():
        vals = " | ".join(f"{m.get(k, float('nan')):.3f}" for k, _ in _METRIC_COLUMNS)
        lines.append(f"| {name} | {m.get('n', '')} | {vals} |")
    return "\n".join(lines)


def _tree_text(tc: dict[str, Any]) -> str:
    """Which tree models were fitted, on which target transform."""
    names = {"hist_gradient_boosting": ("HistGradientBoosting", "boosting", BoostingModel().transform),
             "extra_trees": ("ExtraTrees", "forest", ForestModel().transform)}
    parts = []
    for kind in tc.get("tree_kinds", ()):
        label, key, default = names.get(kind, (kind, "", "none"))
        transform = (tc.get(key) or tc.get("gbm" if key == "boosting" else key) or {}).get("transform", default)
        parts.append(f"scikit-learn {label} on {transform}(Em)" if transform != "none"
                     else f"scikit-learn {label} on Em")
    return " and ".join(parts) or "none"


def _fold_weights(cv: dict[str, Any]) -> str:
    w = cv.get("graph_weight_per_fold")
    return f": {', '.join(f'{x:.2f}' for x in w)}" if w else ""


def _members_text(meta: dict, tc: dict, cv: dict) -> str:
    """The card's member list: graph models (if any), tree models and how they combine."""
    m = meta.get("model") or {}
    n_trees = meta.get("n_tree_models", meta.get("n_boosters", 0))
    trees = (f"- {n_trees} descriptor tree models ({_tree_text(tc)}; exported to plain arrays) on band descriptors "
             "(hop length, ion–host distances along the path, ion and host chemistry, and from descriptor "
             "version 2 the bond-valence, electrostatic and steric profile along a path allowed to bend, from "
             "version 3 the framework's coordination and how its polyhedra share edges and corners), "
             "one per fold.")
    chosen = [(p.get("transform"), p.get("aggregate", "mean")) for p in meta.get("tree_params") or []]
    if chosen:
        counts = {c: chosen.count(c) for c in dict.fromkeys(chosen)}
        trees += " Per fold: " + ", ".join(f"{n} × {a} of the trees on {t}(Em)" for (t, a), n in counts.items()) + "."
    grid = tc.get("forest_grid") or {}
    if grid:
        trees += (f" Settings chosen from {json.dumps(grid)} by an inner CV inside each outer fold (nested: "
                  "the scores below never saw their own choice).")
    if not meta.get("n_members"):
        return (trees + "\n- No graph members: the descriptor trees are the model. Uncertainty: the standard "
                "deviation over the fold models and their single trees.")
    return (f"- {meta.get('n_members', 0)} BandALIGNN graph models (alignn's pure-PyTorch ALIGNN layers; readout "
            f"`{m.get('readout')}`; hidden width {m.get('hidden_features')}; {m.get('alignn_layers')} ALIGNN + "
            f"{m.get('gcn_layers')} GCN layers), one per cross-validation fold.\n{trees}\n"
            f"- Blend: Em = {meta.get('graph_weight'):.2f} × graph + {1 - meta.get('graph_weight', 1):.2f} × trees "
            "(weight chosen on the out-of-fold predictions; the cross-validation rows below score each fold with "
            f"the weight chosen on the other folds{_fold_weights(cv)}). Uncertainty: standard deviation of the "
            "mixture of all members.")


def write_model_card(directory: str | Path, baselines: dict[str, Any] | None = None) -> Path:
    """Write ``MODEL_CARD.md`` beside ``model.json``.

    Args:
        directory: the model directory.
        baselines: extra named metric dictionaries (same folds) to list beside the model.
    """
    d = Path(directory)
    meta = json.loads((d / "model.json").read_text())
    cv = meta.get("cv", {})
    rows = {f"**{meta.get('name')}** (shipped blend)": cv.get("blend", {})}
    for key, label in [("graph_only", "graph ensemble alone (BandALIGNN)"),
                       ("trees_only", "descriptor trees alone"),
                       ("mean_baseline", "mean of training folds")]:
        if key in cv:
            rows[label] = cv[key]
    for name, m in (baselines or cv.get("baselines") or {}).items():
        rows[name] = m
    tc = meta.get("train_config", {})
    files = "\n".join(f"- `{k}`: sha256 `{v}`" for k, v in meta.get("files", {}).items())
    text = f"""# Model card: {meta.get('name')} version {meta.get('version')}

Predicts the migration barrier Em (eV) of an ion hopping between two sites of a host structure,
from the migration band (host + the ion at 5 linearly interpolated images).

## Model
{_members_text(meta, tc, cv)}
- Format version {meta.get('format_version')}; weights load with `torch.load(weights_only=True)`;
  tree models are `.npz` arrays read with `allow_pickle=False`.

## Data
{meta.get('n_train')} literature DFT barriers (training part of the 559/60 split of Devi, Butler & Sai Gautam,
npj Comput. Mater. 2026; dataset: Devi et al., Sci. Data 12, 1922 (2025); MIT License). The 60
held-out entries were never used here.

## Cross-validation
{cv.get('n_entries', '')} entries, {tc.get('n_folds')} folds drawn at random within each structural class
(seed {tc.get('fold_seed')}); the class is never an input. Every model below was scored on the same folds.

{metrics_table(rows)}

Per-fold MAE of the blend: {', '.join(f'{x:.3f}' for x in cv.get('per_fold_mae', []))}.
Spearman of the uncertainty vs the absolute error, out of fold (there each entry has one graph and
one tree model of each kind, so the fold-to-fold part of the spread is missing):
{cv.get('uncertainty_spearman_vs_abs_error', float('nan')):.3f}.

For reference, the literature's Model 3 (transfer-learned ALIGNN) reports MAE 0.261 eV and R² 0.703
on the 60-entry test split.

## Limits
- Trained on barriers from many XC functionals (GGA, GGA+U, SCAN) and NEB set-ups: expect the
  scatter of that literature (DFT itself is ~0.15 eV from experiment).
- Linear bands do not relax the host: hops whose path is blocked by a host atom are predicted from
  an unrelaxed geometry.
- Good-conductor threshold: Em < 0.65 eV.

## Files
{files}

## Training configuration
```json
{json.dumps(tc, indent=1)}
```
"""
    path = d / "MODEL_CARD.md"
    path.write_text(text)
    return path
