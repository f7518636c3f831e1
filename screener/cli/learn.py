"""``screener learn``: finished NEB calculations improve the model."""

from __future__ import annotations

import argparse
import json
import logging

from screener.cli.options import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, HelpFormatter

log = logging.getLogger("screener.learn")

_DESCRIPTION = """\
Read finished NEB calculations, check each as a DFT user would, add the accepted barriers to the
base model's training set and refit its descriptor trees into a new model directory (same layout
as the shipped one: load it with --model DIR or SCREENER_MODEL_DIR; a nightly run with it
re-screens what the model change affects).

Layouts: VASP (image folders 00..NN, each with CONTCAR or POSCAR and OSZICAR or OUTCAR; the end
points need their energies too) or ASE (one *.traj of the images with energies and forces from a
DFT calculator; an optimiser's trajectory is read from its last band; screener refine's ML-potential
trajectories are refused). Barrier: the highest minus the lowest image energy (the training set's
convention); the forward and reverse ones are reported too. A folder is rejected when images did
not finish, the NEB did not converge (no "reached required accuracy" in an intermediate image's
OUTCAR; ASE: a force perpendicular to the path above 0.1 eV/Å), the end-point cells differ
(> 0.5 % on a lattice vector) or no ion moves; and, unless --accept-warnings, when convergence
cannot be checked (no OUTCAR in the intermediate images, frames without forces), more than one ion
moves by more than 0.5 Å, interior images lie below both end points, or the maximum sits at an end
point. A hop already in the base's training set (or given twice) is learned once.

Exit codes: 0 a model was written and every folder was read (accepted or rejected); 3 some folders
could not be read, or none was accepted (no model written); 2 usage error (no base training set,
--out not a new or empty folder, or the base...)."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``learn`` sub-command."""
    p = sub.add_parser("learn", help="learn from finished NEB calculations: a new model directory",
                       description=_DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("folders", nargs="+", metavar="NEB_DIR", help="finished NEB folders (or .traj files)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="the new model directory")
    p.add_argument("--base", default=None, metavar="MODEL",
                   help="the model to start from (default: $SCREENER_MODEL_DIR, else the shipped model)")
    p.add_argument("--accept-warnings", action="store_true",
                   help="accept folders whose only problems are warnings (two ions moving, inverted profile, "
                        "maximum at an end point)")
    p.add_argument("--json", action="store_true",
                   help='print {"folders": [{"folder", "status", "em_eV", "reason", "warnings"}, ...], '
                        '"model_dir", "version", "cv"}')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``screener learn``; returns the exit code."""
    from screener.cli.tables import fmt_ev, print_table
    from screener.core.errors import ModelLoadError
    from screener.loop.learn import NothingToLearn, learn
    from screener.loop.neb_results import ACCEPTED, NebReadError, judge_neb

    from pathlib import Path

    from screener.loop.learn import check_out
    from screener.model.registry import default_model_dir

    try:  # before any work: learn never deletes a folder
        check_out(Path(args.out), Path(args.base) if args.base else default_model_dir())
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    records, unreadable = [], []
    for folder in args.folders:
        try:
            records.append(judge_neb(folder, accept_warnings=args.accept_warnings))
        except NebReadError as exc:
            unreadable.append({"folder": folder, "status": "unreadable", "em_eV": None, "reason": str(exc),
                               "warnings": []})
            log.error("%s", exc)
    result = None
    if any(r.status == ACCEPTED for r in records):
        try:
            result = learn(records, args.out, args.base)
        except NothingToLearn as exc:
            log.error("%s", exc)
        except (ValueError, ModelLoadError) as exc:
            log.error("%s", exc)
            return EXIT_USAGE
    else:
        log.error("no folder was accepted: no model written")
    keys = ("folder", "status", "em_eV", "em_forward_eV", "em_reverse_eV", "reason", "warnings", "working_ion",
            "hop_length_A")
    rows = [{k: r.to_dict()[k] for k in keys} for r in records] + unreadable
    if args.json:
        print(json.dumps({"folders": rows, "model_dir": str(result.model_dir) if result else None,
                          "version": result.version if result else None,
                          "cv": {"trees_only_base": result.cv_base, "trees_only_enlarged": result.cv_new}
                          if result else None}, indent=1, default=float))
    else:
        print_table("NEB folders", ["folder", "status", "Em eV", "reason"],
                    [[r["folder"], r["status"], fmt_ev(r["em_eV"], 3), r["reason"] or "; ".join(r["warnings"])]
                     for r in rows], keep=("folder",))
        if result:
            print(f"model {result.version} written to {result.model_dir}: trees CV MAE "
                  f"{result.cv_base['mae']:.3f} eV on the base rows, {result.cv_new['mae']:.3f} eV on the enlarged set")
    return EXIT_PARTIAL if unreadable or result is None else EXIT_OK
