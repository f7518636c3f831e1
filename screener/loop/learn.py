"""Learn from finished NEBs: add their barriers to a model's training set and refit its fast members.

The base model must carry its training set (``training_set.npz``: descriptors, barriers, folds;
see :mod:`screener.training.trainset`), so this works from an installed package without the
literature dataset. The descriptor trees are refit (each on its fold's training rows plus every
learned row: a DFT barrier teaches every member); the graph members and the blend weight are
kept. Cross-validation of the trees is rerun on the enlarged set, with the base rows in their
folds and the learned rows spread over them, and reported beside the same CV on the base rows.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from screener.loop.neb_results import ACCEPTED, NebRecord
from screener.model.descriptors import feature_matrix
from screener.model.predictor import BandPredictor
from screener.model.registry import default_model_dir
from screener.model.trees import ForestModel
from screener.training.card import metrics_table, write_model_card
from screener.training.metrics import regression_metrics
from screener.training.trainset import TrainingSet

log = logging.getLogger(__name__)

class NothingToLearn(ValueError):
    """No accepted NEB, or none that the base model does not hold already: no model is written."""


#: Files of a model directory that the refit replaces or that describe the old model only.
_REPLACED = ("model.json", "MODEL_CARD.md", "cv_metrics.json")


@dataclass
class LearnResult:
    """What ``learn`` did.

    Attributes:
        model_dir: the new model directory.
        version: its ``name@version``.
        learned: one provenance record per accepted NEB (folder, date, barrier, ion, hop length).
        cv_base: trees-only CV metrics on the base rows.
        cv_new: trees-only CV metrics on the enlarged set.
    """

    model_dir: Path
    version: str
    learned: list[dict[str, Any]]
    cv_base: dict[str, float]
    cv_new: dict[str, float]


def _cv(ts: TrainingSet, settings: list[dict[str, Any]]) -> tuple[dict[str, float], np.ndarray]:
    """Trees-only out-of-fold metrics of a training set (its own folds; ``settings`` per fold)."""
    pred = np.full(len(ts), np.nan)
    for k in range(ts.n_folds):
        test = ts.fold == k
        if test.any():
            pred[test] = ForestModel(**settings[k % len(settings)]).fit(ts.X[~test], ts.y[~test]).predict(ts.X[test])
    return regression_metrics(ts.y, pred), pred


def check_out(out: Path, base: Path) -> None:
    """Refuse a ``--out`` that would lose anything: the base, a folder holding it or in it, a non-empty folder.

    Raises:
        ValueError: with what is wrong; learn never deletes a folder.
    """
    o, b = Path(out).resolve(), Path(base).resolve()
    if o == b or o in b.parents or b in o.parents:
        raise ValueError(f"--out {out} is the base model {base}, holds it or lies inside it: choose a new folder")
    if o.exists() and (not o.is_dir() or any(o.iterdir())):
        raise ValueError(f"--out {out} exists and is not empty: choose a new folder (learn never deletes one)")


def _new_rows(accepted: list[NebRecord], ts: TrainingSet) -> tuple[list[NebRecord], np.ndarray]:
    """The accepted records whose band is not in the training set yet (nor twice among them), and their descriptors.

    A hop learned twice (the same folder given twice, or learned again on a model that already
    holds it) would land in two folds and predict itself in cross-validation.
    """
    X = feature_matrix([r.band for r in accepted]).to_numpy(dtype=float)
    seen = {row.tobytes() for row in np.ascontiguousarray(ts.X, dtype=float)}
    keep = []
    for k, r in enumerate(accepted):
        row = np.ascontiguousarray(X[k]).tobytes()
        if row in seen:
            log.warning("%s: this hop is already in the training set (or given twice): not learned again", r.folder)
            continue
        seen.add(row)
        keep.append(k)
    return [accepted[k] for k in keep], X[keep]


def learn(records: list[NebRecord], out: str | Path, base: str | Path | None = None,
          now: _dt.datetime | None = None) -> LearnResult:
    """Refit the base model's trees with the accepted NEB barriers; write the new model to ``out``.

    Args:
        records: judged NEB folders (:func:`~screener.loop.neb_results.judge_neb`); rejected ones
            are ignored.
        out: the new model directory (created; a new or empty folder, not the base: :func:`check_out`).
        base: the base model directory (default: ``$SCREENER_MODEL_DIR``, else the shipped one).
        now: the date recorded in the provenance (default: now, UTC).

    Raises:
        ValueError: no accepted record (or none new), ``out`` refused (:func:`check_out`), or the base
            carries no training set.
    """
    base_dir = Path(base) if base else default_model_dir()
    out = Path(out)
    check_out(out, base_dir)
    accepted = [r for r in records if r.status == ACCEPTED]
    if not accepted:
        raise NothingToLearn("no accepted NEB folder: nothing to learn")
    try:
        ts = TrainingSet.load(base_dir)
    except FileNotFoundError:
        raise ValueError(f"the model in {base_dir} carries no training set (training_set.npz): retrain it "
                         "with this version of `screener train`") from None
    base_meta = json.loads((base_dir / "model.json").read_text())
    predictor = BandPredictor.load(base_dir)
    kinds = list((base_meta.get("train_config") or {}).get("tree_kinds") or ["extra_trees"])
    if kinds != ["extra_trees"] or any(not isinstance(m, ForestModel) for m in predictor.tree_models):
        raise ValueError("learn refits extra-trees members; this model has other tree kinds")
    accepted, X_new = _new_rows(accepted, ts)
    if not accepted:
        raise NothingToLearn("every accepted NEB is already in the base model's training set: nothing to learn")
    bands = [r.band for r in accepted]
    y_new = np.array([r.em_eV for r in accepted], dtype=float)
    date = (now or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%d")
    enlarged = ts.extended(X_new, y_new, [r.folder for r in accepted], [b.ion for b in bands])
    settings = dict((base_meta.get("train_config") or {}).get("forest") or {})  # as the base was fit
    per_member = [dict(p) for p in base_meta.get("tree_params") or []] or [settings]  # per fold, when recorded
    log.info("refitting %d tree members on %d + %d rows", len(predictor.tree_models), len(ts), len(y_new))
    members = []
    for k in range(len(predictor.tree_models)):
        rows = (ts.fold != k)
        X = np.vstack([ts.X[rows], X_new])
        y = np.concatenate([ts.y[rows], y_new])
        members.append(ForestModel(**per_member[k % len(per_member)]).fit(X, y))
    cv_base, _ = _cv(ts, per_member)
    cv_new, oof = _cv(enlarged, per_member)
    learned_oof = oof[len(ts):]
    learned = [{"folder": r.folder, "date": date, "em_eV": r.em_eV, "em_reverse_eV": r.em_reverse_eV,
                "working_ion": b.ion, "hop_length_A": round(float(b.hop_length), 4),
                "oof_predicted_em_eV": round(float(p), 4)}
               for r, b, p in zip(accepted, bands, learned_oof)]

    # Written next to `out`, then moved into place: an interrupted learn leaves no half model there.
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(base_dir, tmp, ignore=shutil.ignore_patterns(*_REPLACED, "trees_*.npz"))
    base_version = f"{base_meta.get('name', 'model')}@{base_meta.get('version', '0')}"
    previous = list(base_meta.get("learned") or [])
    version = f"{base_meta.get('version', '0')}+learn{len(previous) + len(learned)}"
    info = {k: v for k, v in predictor.info.items() if k not in ("learned", "cv_learned", "base_model")}
    info.update(version=version, base_model=base_version, learned=previous + learned,
                n_train=int(len(enlarged)),
                cv_learned={"trees_only_base": cv_base, "trees_only_enlarged": cv_new,
                            "learned_rows_oof": regression_metrics(y_new, learned_oof) if len(y_new) > 1 else
                            {"mae": float(np.mean(np.abs(learned_oof - y_new)))}})
    new = BandPredictor(predictor.members, predictor.graph_config, members, predictor.graph_weight, info)
    try:
        new.save(tmp)
        enlarged.save(tmp)
        _write_card(tmp, info, len(learned))
        tmp.replace(out)  # `out` is new, or an empty folder (check_out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return LearnResult(out, f"{info.get('name', 'model')}@{version}", learned, cv_base, cv_new)


def _write_card(out: Path, info: dict[str, Any], n_new: int) -> None:
    """The base's card, marked at its top as a learned model's, with what was learned and its CV at the end."""
    path = write_model_card(out)
    cv = info["cv_learned"]
    lines = ["", "## Learned from finished NEB calculations (`screener learn`)", "",
             f"Base model: {info['base_model']}. The descriptor trees were refit with these DFT barriers "
             "(the graph members and the blend weight are the base's).", "",
             "| folder | date | ion | hop (Å) | Em (eV) | reverse (eV) | out-of-fold prediction (eV) |",
             "|---|---|---|---|---|---|---|"]
    for r in info["learned"]:
        lines.append(f"| {r['folder']} | {r['date']} | {r['working_ion']} | {r['hop_length_A']} | {r['em_eV']:.3f} | "
                     f"{r['em_reverse_eV']:.3f} | {r.get('oof_predicted_em_eV', float('nan')):.3f} |")
    lines += ["", "Cross-validation of the trees (same folds; learned rows spread over them):", "",
              metrics_table({"base rows": cv["trees_only_base"], "enlarged set": cv["trees_only_enlarged"]}), ""]
    enlarged = cv["trees_only_enlarged"]
    learned_before = len(info["learned"]) - n_new
    notice = (f"> **A learned model.** {info['base_model']} with its descriptor trees refit on {n_new} more "
              f"DFT barriers (`screener learn`; {len(info['learned'])} learned in all"
              + (f", {learned_before} of them by the base" if learned_before else "")
              + f"; {info['n_train']} training rows, the count in Data below). The model and cross-validation "
              "sections below describe the base model; this model's cross-validation (trees, enlarged set: "
              f"MAE {enlarged.get('mae', float('nan')):.3f} eV) is in the last section.\n\n")
    text = path.read_text()
    at = text.find("## Model\n")
    text = text[:at] + notice + text[at:] if at >= 0 else notice + text
    path.write_text(text + "\n".join(lines))
