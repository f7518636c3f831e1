"""Rewrite a model directory's MODEL_CARD.md with the baseline rows and notes of the benchmarks.

The card written by ``screener train`` lists the models it trained itself (blend, graph ensemble,
trees, mean) and the MACE columns of the dataset. This adds, scored on the same folds:

* the gradient-boosting baseline with settings chosen by inner CV and the random forest
  (``benchmarks/results/cv_baselines.json``, from ``benchmarks/cv_baselines.py``);
* the nested-CV estimate of the shipped extra-trees procedure (``benchmarks/results/cv_trees.json``);

and appends ``--notes`` (a markdown file) as a last section.

Usage::

    python benchmarks/write_card.py data/models/em-band-v3 --no-baselines --notes benchmarks/results/em-band-v3_notes.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from screener.training.card import write_model_card  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def baseline_rows() -> dict[str, dict]:
    """Named metric rows from the benchmark result files that exist."""
    rows: dict[str, dict] = {}
    base = RESULTS / "cv_baselines.json"
    if base.exists():
        b = json.loads(base.read_text())["baselines"]
        rows["gradient boosting on descriptors, settings by inner CV (benchmarks/cv_baselines.py)"] = b["gbm"]
        rows["random forest on descriptors (benchmarks/cv_baselines.py)"] = b["rf"]
    trees = RESULTS / "cv_trees.json"
    if trees.exists():
        t = json.loads(trees.read_text())
        if "transform" in t:
            rows["extra-trees with transform and split share picked by inner CV (nested, "
                 "benchmarks/cv_trees.py)"] = t["transform"]["nested"]
    return rows


def main(argv: list[str] | None = None) -> int:
    """Rewrite the card; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", help="model directory (with model.json)")
    ap.add_argument("--notes", help="markdown file appended as the card's last section")
    ap.add_argument("--no-baselines", action="store_true",
                    help="leave out the benchmark rows (cv_baselines.json, cv_trees.json: computed on descriptors v1)")
    args = ap.parse_args(argv)
    d = Path(args.model_dir)
    meta = json.loads((d / "model.json").read_text())
    rows = dict(meta.get("cv", {}).get("baselines") or {})
    if not args.no_baselines:
        rows.update(baseline_rows())
    path = write_model_card(d, rows)
    if args.notes:
        path.write_text(path.read_text().rstrip() + "\n\n" + Path(args.notes).read_text().strip() + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
