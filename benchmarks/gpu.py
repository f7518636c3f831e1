"""GPU (or CPU) throughput of the fast model and of a universal potential, batched vs one at a time.

Usage::

    python benchmarks/gpu.py [--smoke] [--device auto|cpu|cuda] [--out FILE]

One command, under 5 minutes, one JSON line (the last line printed): fast-model bands/s with
1 band per forward pass and with 64 (graphs built beforehand, so the numbers are the model's),
uMLIP (CHGNet, shipped in its wheel) images/s evaluated one at a time and in one batched call,
and the peak GPU memory (CUDA) or peak resident memory (CPU). It runs unchanged on a CPU (CI runs
``--smoke``: 4 bands, batch 4, 2 images) and on a GPU machine; results go to
``benchmarks/results/gpu_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _bands(n: int) -> list:
    """``n`` bands of the bundled catalogue's hops (cycling through the hosts)."""
    from screener.pathways.bands import build_band
    from screener.pathways.search import find_pathways
    from screener.sources.bundled import load_catalogue

    out = []
    for rec in load_catalogue():
        for ion in rec.working_ions:
            pw = find_pathways(rec.structure, ion)
            for hop in pw.hops:
                if pw.band_size(hop) <= 400:
                    out.append(build_band(pw, hop))
                if len(out) >= n:
                    return out
    return out


def _peak_memory(device: str) -> dict[str, float | None]:
    import torch

    from screener.core.memory import peak_rss_mib

    gpu = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return {"peak_gpu_mib": round(gpu, 1) if gpu is not None else None, "peak_rss_mib": round(peak_rss_mib(), 1)}


def fast_model(device: str, n_bands: int, big_batch: int) -> dict[str, Any]:
    """Bands/s of the shipped model with 1 and with ``big_batch`` bands per forward pass."""
    from screener.model.graphs import GraphCache
    from screener.model.predictor import load_predictor

    bands = _bands(n_bands)
    predictor = load_predictor(None, device)
    cache = GraphCache(predictor.graph_config)
    for b in bands:
        cache.get(b)
    predictor.predict(bands[:2], batch_size=2, cache=cache)  # warm-up (kernels, allocator)
    out = {"bands": len(bands), "mean_sites": round(sum(b.num_sites for b in bands) / len(bands), 1)}
    for name, bs in (("one", 1), ("batched", big_batch)):
        t0 = time.perf_counter()
        predictor.predict(bands, batch_size=bs, cache=cache)
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
        out[f"bands_per_s_{name}"] = round(len(bands) / (time.perf_counter() - t0), 3)
    out["batch_size"] = big_batch
    out["batched_over_one"] = round(out["bands_per_s_batched"] / out["bands_per_s_one"], 3)
    return out


def umlip(device: str, n_images: int) -> dict[str, Any]:
    """Images/s of CHGNet: one structure per call vs one batched call (skipped when not installed)."""
    try:
        from chgnet.model import CHGNet
    except ImportError:
        return {"skipped": "chgnet is not installed (pip install 'screener[refine]')"}
    band = _bands(1)[0]
    images = [band.endpoint(0)] * n_images
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CHGNet.load(verbose=False, use_device=device)
        model.predict_structure(images[:1], task="ef")  # warm-up
        t0 = time.perf_counter()
        for s in images:
            model.predict_structure(s, task="ef")
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.predict_structure(images, task="ef", batch_size=n_images)
        batched = time.perf_counter() - t0
    return {"potential": "chgnet", "images": n_images, "sites": len(images[0]),
            "images_per_s_one": round(n_images / one, 3), "images_per_s_batched": round(n_images / batched, 3),
            "batched_over_one": round(one / batched, 3)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns (and prints as the last line) the result."""
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CI): 4 bands, batch 4, 2 images")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default=None, help="result file (default: benchmarks/results/gpu_<device>.json)")
    args = p.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    n_bands, batch, n_images = (4, 4, 2) if args.smoke else (64 if device == "cuda" else 16,
                                                            64 if device == "cuda" else 16, 16)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"device": device, "smoke": args.smoke,
                              "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
                              "torch": torch.__version__, "python": platform.python_version()}
    result["fast_model"] = fast_model(device, n_bands, batch)
    result["umlip"] = umlip(device, n_images)
    result.update(_peak_memory(device))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out) if args.out else RESULTS / f"gpu_{device}{'_smoke' if args.smoke else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
