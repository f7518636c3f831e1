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
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where to run the graph models and the potential")
    p.add_argument("--potential", metavar="NAME",
                   help="also run the MLIP-NEB protocol of `screener refine` with this potential on every entry "
                        "(see `screener refine --help` for the names) and add neb_em_eV, refined_em_eV, "
                        "refined_uncertainty_eV and refined_status")
    p.add_argument("--neb-cache", metavar="DIR",
                   help="folder of the cached NEB records, one per entry, reused by reruns "
                        "(default: ~/.cache/screener/neb/<potential>)")
    p.add_argument("--max-sites", type=int, default=None, metavar="N",
                   help="run the NEB only on entries whose structure (host + ion) has at most N atoms; larger "
                        "ones keep the fast prediction")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch threads of the potential")
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


def _neb_atoms(band) -> int:
    """Atoms of a band's NEB structure: the host and the ion."""
    return band.num_sites - band.n_images + 1


def add_refined(df: pd.DataFrame, entries, args: argparse.Namespace) -> pd.DataFrame:
    """The prediction table with the NEB barrier of ``args.potential`` and the combined barrier."""
    from screener.core.progress import progress_bar
    from screener.handoff.combine import load_combination, refined_status
    from screener.handoff.neb import RefineSettings
    from screener.handoff.validation import neb_records

    st = RefineSettings(potential=args.potential, device=args.device, threads=args.threads)
    cache = Path(args.neb_cache) if args.neb_cache else Path.home() / ".cache" / "screener" / "neb" / st.potential
    todo = [i for i, e in enumerate(entries)
            if e.band is not None and (args.max_sites is None or _neb_atoms(e.band) <= args.max_sites)]
    records: dict[int, dict] = {}
    with progress_bar(False) as progress:
        bar = progress.add_task(f"NEB ({st.potential})", total=len(todo)) if progress else None

        def done(k: int, rec: dict) -> None:
            records[todo[k]] = rec
            if progress:
                progress.advance(bar)

        neb_records([entries[i].band for i in todo], st, cache, done)
    combination, _ = load_combination(st.potential)
    neb = np.array([records.get(i, {}).get("em_eV", np.nan) for i in range(len(entries))], dtype=float)
    refined, sigma, _ = combination.combine(df["predicted_em_eV"], df["uncertainty_eV"], neb)
    status = []
    for i, e in enumerate(entries):
        rec = records.get(i)
        if e.band is None:
            status.append("no prediction")
        elif rec is None:
            status.append(f"fast model only (NEB not run: more than {args.max_sites} atoms)")
        else:
            status.append(refined_status(neb[i], rec.get("error", ""), rec.get("converged"), combination.name))
    out = df.copy()
    out.insert(3, "neb_em_eV", neb)
    out.insert(4, "refined_em_eV", refined)
    out.insert(5, "refined_uncertainty_eV", sigma)
    out.insert(6, "refined_status", status)
    return out


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
    if args.potential is not None:
        from screener.handoff.potentials import load_potential

        if args.max_sites is not None and args.max_sites < 1:
            log.error("--max-sites must be positive")
            return EXIT_USAGE
        try:
            load_potential(args.potential, args.device)  # refuse before any work
        except ScreenerError as exc:
            log.error("%s", exc)
            return EXIT_USAGE
    log.info("model %s on %d entries", predictor.version, len(entries))
    df = evaluate_entries(entries, predictor, args.batch_size)
    if args.potential is not None:
        df = add_refined(df, entries, args)
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
        if "refined_em_eV" in scored:
            m = {"predicted": m, "refined": regression_metrics(scored["target_em_eV"].to_numpy(),
                                                               scored["refined_em_eV"].to_numpy())}
            ok = scored["neb_em_eV"].notna()
            if ok.any():
                m["neb"] = regression_metrics(scored.loc[ok, "target_em_eV"].to_numpy(),
                                              scored.loc[ok, "neb_em_eV"].to_numpy())
        print(json.dumps(m, indent=1))
    print(f"{len(df) - n_err} predicted, {n_err} failed -> {out}")
    return EXIT_PARTIAL if n_err else EXIT_OK
