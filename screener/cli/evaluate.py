"""``screener evaluate``: predict the barriers of a dataset file and score them when targets exist."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from screener.cli.options import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, HelpFormatter
from screener.core.errors import ScreenerError

log = logging.getLogger("screener.evaluate")

COLUMNS = ["jid", "predicted_em_eV", "uncertainty_eV", "target_em_eV", "error"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    p = sub.add_parser(
        "evaluate",
        formatter_class=HelpFormatter,
        help="predict barriers for a dataset file (band or end-point form) and score them",
        description=(
            "Predict Em for every entry of a JSON dataset (band form 'atoms' or end-point form "
            "'atoms_ini'/'atoms_fin'). Writes one CSV row per entry; entries that cannot be read "
            "get a row with an error message. Prints the metrics when targets are given."
        ),
    )
    p.add_argument("--data", required=True, help="dataset JSON file")
    p.add_argument("--model", help="model directory (default: the shipped model)")
    p.add_argument("--out", required=True, help="CSV of predictions to write")
    p.add_argument("--batch-size", type=int, default=32, help="bands per forward pass")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run the graph models")
    p.set_defaults(func=run)


def evaluate_entries(entries, predictor, batch_size: int = 32) -> pd.DataFrame:
    """Prediction table of dataset entries (one row each; failures carry an ``error``)."""
    rows = []
    ok = [e for e in entries if e.band is not None]
    pred = predictor.predict([e.band for e in ok], batch_size=batch_size) if ok else None
    by_jid = {}
    if pred is not None:
        for i, e in enumerate(ok):
            by_jid[id(e)] = (float(pred.em[i]), float(pred.uncertainty[i]))
    for e in entries:
        em, unc = by_jid.get(id(e), (np.nan, np.nan))
        rows.append({
            "jid": e.jid,
            "predicted_em_eV": em,
            "uncertainty_eV": unc,
            "target_em_eV": np.nan if e.target is None else float(e.target),
            "error": e.error or "",
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def run(args: argparse.Namespace) -> int:
    """Run ``screener evaluate``; returns the exit code."""
    from screener.model.predictor import BandPredictor
    from screener.training.dataset import read_entries
    from screener.training.metrics import regression_metrics

    try:
        entries = read_entries(args.data)
        predictor = BandPredictor.load(args.model, device=args.device)
    except ScreenerError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    log.info("model %s on %d entries", predictor.version, len(entries))
    df = evaluate_entries(entries, predictor, args.batch_size)
    if df["target_em_eV"].isna().all():
        df = df.drop(columns=["target_em_eV"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    n_err = int((df["error"] != "").sum())
    scored = df[(df["error"] == "")]
    if "target_em_eV" in df and scored["target_em_eV"].notna().any():
        scored = scored[scored["target_em_eV"].notna()]
        m = regression_metrics(scored["target_em_eV"].to_numpy(), scored["predicted_em_eV"].to_numpy())
        print(json.dumps(m, indent=1))
    print(f"{len(df) - n_err} predicted, {n_err} failed -> {out}")
    return EXIT_PARTIAL if n_err else EXIT_OK
