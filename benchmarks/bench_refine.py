"""DFT hand-off timings: ``export`` (IDPP images) and ``refine`` (CHGNet CI-NEB) on LiFePO4.

Usage::

    SCREENER_MODEL_DIR=/tmp/devmodel python benchmarks/bench_refine.py \
        [--hops vacancy-shortest|vacancy|all] [--relax-steps 200] [--neb-steps 200] [--threads 2]

Screens the bundled olivine LiFePO4 for Li (threshold 10 eV, so it is shortlisted), exports the
hops of its 1D path (VASP layout, 5 intermediate images), then refines the chosen hops with the
converged settings of ``screener refine`` (fixed-cell FIRE end-point relaxation, CI-NEB with
FIRE to 0.1 eV/Å) and prints seconds per hop and the NEB barrier beside the prediction.
Results go to ``benchmarks/results/bench_refine.json``. Run it on an otherwise idle machine:
one converged hop is minutes of CPU.

Reference: the b-axis [010] channel hop of LiFePO4 (the shortest Li-Li hop, ~3.0 Å) has a
GGA+U NEB barrier of ~0.27 eV (Morgan, Van der Ven, Ceder, Electrochem. Solid-State Lett. 7,
A30, 2004) and ~0.55 eV from atomistic potentials (Islam et al., Chem. Mater. 17, 5085, 2005).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "bench_refine.json"


def main() -> None:
    from screener.handoff.export import ExportOptions, export_run
    from screener.handoff.neb import RefineSettings
    from screener.handoff.refine import refine_run
    from screener.screening.run import screen
    from screener.sources.bundled import catalogue_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hops", choices=["vacancy-shortest", "vacancy", "all"], default="vacancy-shortest",
                        help="which path hops to refine (default: %(default)s)")
    parser.add_argument("--potential", default="chgnet", choices=["chgnet", "sevenn"])
    parser.add_argument("--images", type=int, default=5, help="intermediate NEB images")
    parser.add_argument("--relax-steps", type=int, default=200)
    parser.add_argument("--neb-steps", type=int, default=200)
    parser.add_argument("--fmax", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--workers", type=int, default=None,
                        help="Dask workers (default: run in this process)")
    parser.add_argument("--model", default=None, help="model directory (default: $SCREENER_MODEL_DIR or shipped)")
    parser.add_argument("--out", default=str(RESULTS), help="JSON file for the results")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    work = Path(tempfile.mkdtemp(prefix="bench_refine_"))
    try:
        hosts = work / "hosts"
        hosts.mkdir()
        shutil.copy(catalogue_dir() / "LiFePO4.cif", hosts / "LiFePO4.cif")
        t0 = time.perf_counter()
        res = screen("Li", str(hosts), out=work / "run", synchronous=True, threshold=10.0, model_dir=args.model)
        t_screen = time.perf_counter() - t0
        run_dir = res.out

        t0 = time.perf_counter()
        manifest = export_run(run_dir, work / "neb", ExportOptions(top=1, fmt="vasp", source=str(hosts)))
        t_export = time.perf_counter() - t0

        hops = res.hops[res.hops["hop_id"].isin(res.shortlist["path_hop_ids"].iloc[0])]
        if args.hops != "all":
            hops = hops[hops["limit"] == "vacancy"]
        if args.hops == "vacancy-shortest":
            hops = hops.sort_values("length_A").head(1)
        st = RefineSettings(potential=args.potential, n_intermediate=args.images, fmax=args.fmax,
                            relax_steps=args.relax_steps, neb_steps=args.neb_steps, threads=args.threads)
        t0 = time.perf_counter()
        table = refine_run(run_dir, 1, st, hop_ids=hops["hop_id"].tolist(), workers=args.workers,
                           synchronous=args.workers is None, source=str(hosts))
        t_refine = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cols = ["hop_id", "limit", "length_A", "predicted_em_eV", "uncertainty_eV", "neb_em_eV", "neb_em_reverse_eV",
            "delta_eV", "disagreement", "converged", "initial_steps", "final_steps", "neb_steps",
            "initial_max_force_eV_A", "neb_max_force_eV_A", "seconds", "error"]
    pd.set_option("display.width", 200)
    print(table[cols].to_string(index=False))
    out = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_at_end": os.getloadavg()},
        "settings": {**vars(args)},
        "model_version": res.run_info.get("model_version"),
        "screen_seconds": t_screen,
        "export": {"hops": len(manifest), "seconds": t_export, "seconds_per_hop": t_export / max(1, len(manifest)),
                   "status": manifest["status"].value_counts().to_dict(),
                   "min_distance_A": float(manifest["min_distance_A"].min())},
        "refine": {"hops": len(table), "wall_seconds": t_refine,
                   "rows": json.loads(table[cols].to_json(orient="records"))},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(f"export {t_export:.1f} s for {len(manifest)} hops; refine {t_refine:.0f} s for {len(table)} hop(s) "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
