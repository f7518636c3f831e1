"""``screener refine``: MLIP-NEB on the top candidates' path hops, combined with the prediction."""

from __future__ import annotations

import argparse
import logging
import time

from screener.cli.options import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    HelpFormatter,
    add_run_source_argument,
)
from screener.cli.tables import fmt_ev, print_table
from screener.core.errors import ScreenerError

log = logging.getLogger("screener.refine")

_DESCRIPTION = """\
A second opinion on the best candidates: for every hop of the 1D path of the top N shortlisted
materials (the hops `screener export` writes), run the published MLIP-NEB protocol with a
universal ML potential (Bheemaguli, Xiao & Sai Gautam, Digital Discovery 2026): end points
relaxed at fixed cell (BFGS line search, 0.05 eV/Å), IDPP images, a NEB (method "eb", spring
5 eV/Å², no climbing image) relaxed with BFGS to 0.05 eV/Å (on a GPU all images of a step in one
batched call where the potential allows); one Dask task per hop. Where a symmetry of the crystal
swaps the hop's two sites, the final end point starts from the image of the relaxed initial one
and the second half of the NEB images takes its partners' energies and forces (--no-symmetry:
evaluate everything).
--protocol legacy gives screener 0.3's settings (FIRE, climbing image, 0.1 eV/Å, 5 images).

The NEB barrier is combined with the fast prediction (refined_em_eV, refined_uncertainty_eV: a
robust inverse-variance posterior fitted on DFT validation entries, data/refine/combination.json,
which also scales back a potential's systematically low barriers by its fitted `scale`);
where the NEB fails the refined barrier is the prediction and refined_status says so.

Potentials (--potential):
  chgnet            CHGNet 0.3.0; weights in the wheel   (pip install 'screener[refine]')
  7net-0            SevenNet-0; weights in the wheel     (pip install sevenn; alias: sevenn)
  7net-l3i5         SevenNet l3i5; weights in the wheel
  7net-mf-0         SevenNet multi-fidelity, PBE head; weights in the wheel
  mace-mp-0(-large) MACE-MP-0 medium (large)             (pip install mace-torch; downloads weights)
  orb-v3            Orb-v3 conservative, OMat            (pip install orb-models; downloads weights)
  mattersim         MatterSim v1 1M                      (pip install mattersim; downloads weights)
  uma-s-1           fairchem UMA small, OMat task        (pip install fairchem-core; downloads weights)
Where weights cannot be had (no network) the run stops before any work with one clear error.

Writes RUN_DIR/refined.parquet (material_id, hop_id, limit, potential, neb_em_eV = highest minus
lowest image energy, predicted_em_eV, refined_em_eV, refined_uncertainty_eV, refined_status,
disagreement = |NEB / scale - predicted| > 0.3 eV with scale the potential's fitted softening,
end-point energies and residual forces, steps, converged, seconds...; rows of earlier
refinements of other hops or potentials are kept; each hop's row is written as soon as it is done,
and a hop already refined alike is not run again: see --redo) and the relaxed images
RUN_DIR/refined/<material>__<hop_id>/<potential>.traj, which `screener export` then hands out
instead of IDPP images. The ranking never changes. Seconds per hop, measured: see
benchmarks/results/bench_refine.json. One hop (or --sync) runs in this process with a progress
line per optimiser step; several hops run on Dask workers.

Exit codes: 0 every hop refined (converged or not: see the converged column), or an empty
shortlist; 3 some hops failed (a hop that failed keeps its earlier NEB row, if any); 2 usage error
(potential not installed or without weights, no run directory, no source folder, --hop or --limit
selecting no path hop...); 1 crash."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``refine`` sub-command."""
    from screener.handoff.neb import RefineSettings
    from screener.handoff.potentials import POTENTIALS

    d = RefineSettings()
    p = sub.add_parser("refine", help="MLIP-NEB (CHGNet, SevenNet, MACE, Orb...) on the top candidates' hops, "
                       "combined with the prediction",
                       formatter_class=HelpFormatter, description=_DESCRIPTION)
    p.add_argument("run_dir", metavar="RUN_DIR", help="output folder of `screener run`")
    p.add_argument("--top", type=int, default=3, metavar="N",
                   help="refine the path hops of the N best-ranked shortlisted materials (default: %(default)s)")
    p.add_argument("--potential", choices=POTENTIALS, default="chgnet", metavar="NAME",
                   help="universal ML potential, one of: " + ", ".join(POTENTIALS) + " (default: %(default)s)")
    p.add_argument("--protocol", choices=["mlip-neb", "legacy"], default="mlip-neb",
                   help="NEB settings: the published protocol, or screener 0.3's (default: %(default)s)")
    p.add_argument("--hop", action="append", default=None, metavar="HOP_ID",
                   help="refine only this hop id (repeatable); it must be among the selected path hops")
    p.add_argument("--limit", choices=["vacancy", "dilute", "both"], default="both",
                   help="refine only hops in this limit (default: %(default)s)")
    p.add_argument("--images", type=int, default=None, metavar="N",
                   help=f"intermediate NEB images between the end points (default: {d.n_intermediate})")
    p.add_argument("--fmax", type=float, default=None, metavar="eV/Å",
                   help=f"force convergence of the end-point relaxations and the NEB (default: {d.fmax})")
    p.add_argument("--relax-steps", type=int, default=None, metavar="N",
                   help=f"most optimiser steps per end-point relaxation (default: {d.relax_steps})")
    p.add_argument("--neb-steps", type=int, default=None, metavar="N",
                   help=f"most optimiser steps of the NEB (default: {d.neb_steps})")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where the potential runs (default: cpu); on cuda the images of a NEB step are batched")
    p.add_argument("--no-symmetry", dest="symmetry", action="store_false",
                   help="relax both end points from their own start and evaluate every image even where a "
                        "symmetry of the crystal swaps the hop's sites (default with the protocol: the final end "
                        "point starts from the image of the initial one and the second half of the images takes "
                        "its partners' results; --protocol legacy never uses symmetry)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads per hop task (default: 1 per Dask worker, torch's default with --sync)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes of a local Dask cluster (default: min(hops, CPU cores))")
    p.add_argument("--scheduler", default=None,
                   help="address of an existing Dask scheduler to join instead of starting workers")
    p.add_argument("--sync", action="store_true", help="run every hop in this process (no Dask workers)")
    p.add_argument("--redo", action="store_true",
                   help="refine every selected hop again (default: a hop already refined with this potential, "
                        "these settings and the same band keeps its row, so an interrupted refine goes on "
                        "where it stopped)")
    add_run_source_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary table")
    p.set_defaults(func=run)


def _summary(table) -> None:
    rows = []
    for _, r in table.iterrows():
        ok = r["error"] == ""
        rows.append([str(r["material_id"]), str(r["hop_id"]), str(r["limit"]), fmt_ev(r["predicted_em_eV"]),
                     fmt_ev(r["neb_em_eV"]) if ok else "failed",
                     (f"{r['delta_eV']:+.2f}" + (" !" if r["disagreement"] else "")) if ok else "",
                     f"{fmt_ev(r['refined_em_eV'])}±{fmt_ev(r['refined_uncertainty_eV'])}",
                     "yes" if r["converged"] else "no", str(r["neb_steps"]), fmt_ev(r["seconds"], 0)])
    print_table("ML-potential NEB (a second opinion; the ranking is unchanged)",
                ["material", "hop", "limit", "pred eV", "NEB eV", "Δ eV", "refined eV", "conv", "steps", "s"], rows,
                keep=("material", "hop"),
                caption="Δ = NEB - prediction; ! : the prediction and the NEB corrected for the potential's "
                        "softening (NEB / scale) differ by more than 0.3 eV")


def run(args: argparse.Namespace) -> int:
    """Run ``screener refine``; returns the exit code."""
    from screener.core.progress import progress_bar
    from screener.handoff.neb import RefineSettings
    from screener.handoff.refine import refine_run

    if args.top < 1 or (args.workers is not None and args.workers < 1):
        log.error("--top and --workers must be positive")
        return EXIT_USAGE
    threads = args.threads if args.threads is not None else (None if args.sync else 1)
    try:
        chosen = {k: v for k, v in (("n_intermediate", args.images), ("fmax", args.fmax),
                                    ("relax_steps", args.relax_steps), ("neb_steps", args.neb_steps))
                  if v is not None}
        common = dict(potential=args.potential, device=args.device, threads=threads, **chosen)
        if not args.symmetry:
            common["symmetry"] = False
        st = RefineSettings.legacy(**common) if args.protocol == "legacy" else RefineSettings(**common)
    except (ValueError, ScreenerError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    limits = None if args.limit == "both" else (args.limit,)
    t0 = time.perf_counter()
    try:
        with progress_bar(args.quiet) as progress:
            table = refine_run(args.run_dir, args.top, st, hop_ids=args.hop, limits=limits, workers=args.workers,
                               scheduler=args.scheduler, synchronous=args.sync, source=args.source,
                               progress=progress, redo=args.redo)
    except (ScreenerError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    if not len(table):  # refine_run logged why; no refined.parquet was written
        if args.hop or limits:
            log.error("none of the hops asked for (--hop, --limit) is on the path of the top %d materials", args.top)
            return EXIT_USAGE
        print(f"nothing to refine: no path hops among the top {args.top} materials of {args.run_dir}")
        return EXIT_OK
    if not args.quiet:
        _summary(table)
    n_fail = int((table["error"] != "").sum())
    n_kept = len(table.attrs.get("kept_hops", []))
    kept = f" ({n_kept} kept from an earlier refine; --redo runs them again)" if n_kept else ""
    print(f"{len(table) - n_fail} of {len(table)} hops refined with {st.potential}{kept} in "
          f"{time.perf_counter() - t0:.0f} s -> {args.run_dir}/refined.parquet")
    return EXIT_PARTIAL if n_fail else EXIT_OK
