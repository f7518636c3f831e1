"""``screener predict``: the barrier of a hop given as two end-point files."""

from __future__ import annotations

import argparse
import json
import logging

from screener.cli.options import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, HelpFormatter

log = logging.getLogger("screener.predict")

_DESCRIPTION = """\
Predict the migration barrier of one hop from its two end points (POSCAR/CONTCAR/CIF, VASP 5/6
headers, Selective dynamics and POTCAR-hash species labels read by pymatgen). The band is built as
for the dataset's end-point form: sites matched between the end points, the migrating ion the site
that moves furthest (or of --ion), 5 linear images.

Warnings (never silence) when more than one ion moves by more than 0.5 Å, the two cells differ
(> 0.5 % on a lattice vector), the hop is longer than any in the training data, or the
uncertainty is above 0.5 eV (the host is far from the training data).

Exit codes: 0 every pair predicted (warnings do not change it); 3 some pair could not be
predicted; 2 usage error."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command."""
    p = sub.add_parser("predict", help="predict the barrier of a hop given as two end-point files",
                       description=_DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--ini", metavar="FILE", help="initial end point")
    p.add_argument("--fin", metavar="FILE", help="final end point")
    p.add_argument("--ion", default=None, help="the migrating element (default: the site that moves furthest)")
    p.add_argument("--pairs", metavar="CSV", help="several hops: a CSV with columns ini, fin[, ion] (paths "
                                                  "relative to the CSV's folder); one result per row")
    p.add_argument("--model", default=None, help="model directory (default: $SCREENER_MODEL_DIR, else the shipped model)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: an object (predicted_em_eV, uncertainty_eV, hop_length_A, working_ion, "
                        "warnings, and error when the pair failed) or, with --pairs, a list of them with ini, fin "
                        "and error")
    p.set_defaults(func=run)


def _pairs(args: argparse.Namespace) -> list[dict[str, str]]:
    import csv
    from pathlib import Path

    if args.pairs:
        base = Path(args.pairs).parent
        with open(args.pairs, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or not {"ini", "fin"} <= set(rows[0]):
            raise ValueError(f"{args.pairs}: needs a header with columns ini, fin (and optionally ion)")
        short = [k + 2 for k, r in enumerate(rows) if not (r.get("ini") or "").strip() or not (r.get("fin") or "").strip()]
        if short:
            raise ValueError(f"{args.pairs}: line(s) {', '.join(map(str, short))} lack an ini or fin file")
        return [{"ini": str(base / r["ini"].strip()), "fin": str(base / r["fin"].strip()),
                 "ion": (r.get("ion") or "").strip()} for r in rows]
    return [{"ini": args.ini, "fin": args.fin, "ion": args.ion or ""}]


def run(args: argparse.Namespace) -> int:
    """Run ``screener predict``; returns the exit code."""
    if bool(args.pairs) == bool(args.ini or args.fin) or (not args.pairs and not (args.ini and args.fin)):
        log.error("give --ini FILE --fin FILE, or --pairs FILE.csv")
        return EXIT_USAGE
    try:
        pairs = _pairs(args)
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    from screener.core.chemistry import parse_chemistry
    from screener.core.errors import ModelLoadError, ScreenerError
    from screener.loop.predict import predict_endpoints
    from screener.model.predictor import load_predictor
    from screener.model.registry import default_model_dir
    from screener.sources.files import read_structure
    from screener.training.trainset import TrainingSet

    try:
        for p in pairs:
            if p["ion"]:
                p["ion"] = parse_chemistry(p["ion"])[0]
        predictor = load_predictor(args.model)
    except (ValueError, ModelLoadError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    try:
        longest = TrainingSet.load(args.model or default_model_dir()).max_hop_length_A
    except (OSError, ValueError):
        longest = None
    results, failed = [], 0
    for p in pairs:
        out = {"ini": p["ini"], "fin": p["fin"]}
        try:
            res = predict_endpoints(read_structure(p["ini"]), read_structure(p["fin"]), predictor,
                                    ion=p["ion"] or None, max_training_hop_A=longest)
            out.update(res.to_dict(), error="")
        except ScreenerError as exc:
            failed += 1
            out.update(predicted_em_eV=None, uncertainty_eV=None, hop_length_A=None, working_ion=None,
                       warnings=[], error=str(exc))
            log.error("%s -> %s: %s", p["ini"], p["fin"], exc)
        results.append(out)
    if args.json:
        single = {k: v for k, v in results[0].items() if k not in ("ini", "fin") and (k != "error" or v)}
        print(json.dumps(results if args.pairs else single, indent=1))
    else:
        for r in results:
            if r["error"]:
                continue
            print(f"{r['ini']} -> {r['fin']}: Em = {r['predicted_em_eV']:.3f} ± {r['uncertainty_eV']:.3f} eV "
                  f"({r['working_ion']}, hop {r['hop_length_A']:.2f} Å)")
            for w in r["warnings"]:
                print(f"  warning: {w}")
    return EXIT_PARTIAL if failed else EXIT_OK
