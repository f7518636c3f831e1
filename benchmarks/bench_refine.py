"""DFT hand-off timings: ``export`` (IDPP images) and ``refine`` on LiFePO4, protocol against legacy.

Usage::

    python benchmarks/bench_refine.py [--protocol both|mlip-neb|legacy] [--potential chgnet]
        [--hops vacancy-shortest|vacancy|all] [--threads 2]

Screens the bundled olivine LiFePO4 for Li (threshold 10 eV, so it is shortlisted), exports the
hops of its 1D path (VASP layout), then refines the chosen hops with ``screener refine``'s
settings: the published MLIP-NEB protocol (the default) and, with ``both``, screener 0.3's
settings (FIRE, 5 images, 0.1 eV/Å, climbing image) on the same hop, and prints seconds per hop,
steps, potential evaluations and the NEB barrier beside the prediction (the two protocols
interleaved, ``--repeats`` times, medians; the potential loaded before timing). Results go to
``benchmarks/results/bench_refine.json``. Run it on an otherwise idle machine: one converged hop
is minutes of CPU.

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
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "bench_refine.json"


def main() -> None:
    from screener.handoff.export import ExportOptions, export_run
    from screener.handoff.neb import RefineSettings, settings_dict
    from screener.pathways.config import PathwayConfig
    from screener.handoff.refine import refine_run
    from screener.screening.run import screen
    from screener.sources.bundled import catalogue_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hops", choices=["vacancy-shortest", "vacancy", "all"], default="vacancy-shortest",
                        help="which path hops to refine (default: %(default)s)")
    parser.add_argument("--potential", default="chgnet")
    parser.add_argument("--protocol", choices=["both", "mlip-neb", "legacy"], default="both")
    parser.add_argument("--min-width", type=float, default=None,
                        help="band supercell width (Å; default: screener's), smaller for a quicker benchmark")
    parser.add_argument("--images", type=int, default=None, help="intermediate NEB images (default: the protocol's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed runs of each protocol, interleaved (default: %(default)s; medians reported)")
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
        pathways = PathwayConfig(min_width=args.min_width) if args.min_width else None
        res = screen("Li", str(hosts), out=work / "run", synchronous=True, threshold=10.0, model_dir=args.model,
                     pathways=pathways)
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
        extra = {"n_intermediate": args.images} if args.images else {}
        protocols = ["mlip-neb", "legacy"] if args.protocol == "both" else [args.protocol]
        if args.workers is None:  # the potential is loaded once per process: not part of a hop's cost
            from screener.handoff.potentials import load_potential

            load_potential(args.potential)
        runs: dict[str, tuple] = {}
        walls: dict[str, list[float]] = {name: [] for name in protocols}
        seconds: dict[str, list[float]] = {name: [] for name in protocols}
        for _ in range(max(1, args.repeats)):
            for name in protocols:  # interleaved, so that a slow spell of the machine hits both
                make = RefineSettings.legacy if name == "legacy" else RefineSettings
                st = make(potential=args.potential, threads=args.threads, **extra)
                t0 = time.perf_counter()
                table = refine_run(run_dir, 1, st, hop_ids=hops["hop_id"].tolist(), workers=args.workers,
                                   synchronous=args.workers is None, source=str(hosts), redo=True)
                walls[name].append(time.perf_counter() - t0)
                seconds[name].append(float(table["seconds"].mean()))
                runs[name] = (st, table)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cols = ["hop_id", "limit", "length_A", "n_atoms", "predicted_em_eV", "uncertainty_eV", "neb_em_eV",
            "neb_em_reverse_eV", "refined_em_eV", "refined_uncertainty_eV", "refined_status", "delta_eV",
            "converged", "initial_steps", "final_steps", "final_from_symmetry", "neb_steps", "n_images",
            "evaluations", "neb_max_force_eV_A", "seconds", "error"]
    pd.set_option("display.width", 220)
    refine = {}
    for name, (st, table) in runs.items():
        print(f"--- {name}")
        print(table[cols].to_string(index=False))
        refine[name] = {"settings": settings_dict(st), "hops": len(table), "wall_seconds": walls[name],
                        "seconds_per_hop_repeats": seconds[name],
                        "seconds_per_hop": float(statistics.median(seconds[name])),
                        "evaluations_per_hop": float(table["evaluations"].mean()),
                        "rows": json.loads(table[cols].to_json(orient="records"))}
    if len(refine) == 2:
        refine["legacy_over_protocol_seconds"] = (refine["legacy"]["seconds_per_hop"]
                                                  / refine["mlip-neb"]["seconds_per_hop"])
        refine["legacy_over_protocol_evaluations"] = (refine["legacy"]["evaluations_per_hop"]
                                                      / refine["mlip-neb"]["evaluations_per_hop"])
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
        "refine": refine,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(f"export {t_export:.1f} s for {len(manifest)} hops; refine (median of {args.repeats}): "
          + ", ".join(f"{k} {v['seconds_per_hop']:.0f} s/hop, {v['evaluations_per_hop']:.0f} evaluations"
                      for k, v in refine.items() if isinstance(v, dict))
          + f" -> {args.out}")


if __name__ == "__main__":
    main()
