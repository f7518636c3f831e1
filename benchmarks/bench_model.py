"""Band-model speed: bands/s batched vs one at a time, and peak memory of the largest band.

Usage: python benchmarks/bench_model.py [--data DIR] [--model DIR] [--n 128] [--repeats 3]

"One at a time" is the seed model's loop: build one band's graph, run one forward pass, repeat.
"Batched" predicts all bands in one call, with forward passes of ``--batch-size`` bands; "batched,
capped" uses the forward-pass size ``screen()`` uses on a CPU (about 384 atoms per pass).
Both use one torch thread, the shipped ensemble (all members) and the same bands. Prints a
markdown table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _peak_rss_child(data: Path, model: str | None, jid: str) -> float:
    """Peak RSS (MiB) of a fresh process that predicts the band ``jid`` alone."""
    # screener's own peak-memory reading (VmHWM on Linux: ru_maxrss would carry the parent's peak
    # over through fork + exec).
    code = f"""
import json, torch
torch.set_num_threads(1)
from screener.screening.run import peak_rss_mib as hwm
from screener.training.dataset import entry_from_record
from screener.model.predictor import BandPredictor
rec = [r for r in json.load(open({str(data)!r})) if str(r["jid"]) == {jid!r}][0]
band = entry_from_record(rec).band
p = BandPredictor.load({model!r})
base = hwm()
p.predict([band])
print(json.dumps({{"before": base, "after": hwm()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "em-dataset" / "train_bands.json"),
                    help="dataset JSON (band form)")
    ap.add_argument("--model", default=None, help="model directory (default: shipped)")
    ap.add_argument("--n", type=int, default=128, help="bands timed")
    ap.add_argument("--batch-size", type=int, default=32, help="bands per batch")
    ap.add_argument("--repeats", type=int, default=3, help="repeats (median reported)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from screener.model.graphs import GraphCache
    from screener.model.predictor import BandPredictor
    from screener.training.dataset import read_entries

    entries = [e for e in read_entries(args.data) if e.band is not None]
    bands = [e.band for e in entries[: args.n]]
    p = BandPredictor.load(args.model)
    p.predict(bands[:2])  # warm-up

    def one_at_a_time() -> float:
        t = time.perf_counter()
        for b in bands:
            p.predict([b], batch_size=1)
        return time.perf_counter() - t

    from screener.screening.tasks import forward_batch_size

    capped_size = forward_batch_size(bands, args.batch_size, "cpu")

    def batched(size: int = args.batch_size) -> float:
        t = time.perf_counter()
        p.predict(bands, batch_size=size)
        return time.perf_counter() - t

    def batched_model_only() -> tuple[float, float]:
        cache = GraphCache(p.graph_config)
        t = time.perf_counter()
        for b in bands:
            cache.get(b)
        tg = time.perf_counter() - t
        t = time.perf_counter()
        p.predict(bands, batch_size=args.batch_size, cache=cache)
        return tg, time.perf_counter() - t

    single = [one_at_a_time() for _ in range(args.repeats)]
    batch = [batched() for _ in range(args.repeats)]
    capped = [batched(capped_size) for _ in range(args.repeats)]
    split = [batched_model_only() for _ in range(args.repeats)]
    s, b = statistics.median(single), statistics.median(batch)
    g = statistics.median(x[0] for x in split)
    m = statistics.median(x[1] for x in split)
    largest = max(entries, key=lambda e: e.band.num_sites)
    mem = _peak_rss_child(Path(args.data), args.model, largest.jid)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1",
        "n_bands": len(bands),
        "members": len(p.members),
        "trees": len(p.tree_models),
        "bands_per_s_one_at_a_time": len(bands) / s,
        "bands_per_s_batched": len(bands) / b,
        "batched_over_single": s / b,
        "capped_bands_per_pass": capped_size,
        "bands_per_s_batched_capped": len(bands) / statistics.median(capped),
        "batched_capped_over_single": s / statistics.median(capped),
        "graph_build_s_per_band": g / len(bands),
        "model_s_per_band_batched": m / len(bands),
        "largest_band_sites": largest.band.num_sites,
        "largest_band_peak_rss_mib": mem["after"],
        "rss_before_largest_band_mib": mem["before"],
    }
    print("| measure | value |\n|---|---|")
    for k, v in result.items():
        print(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
