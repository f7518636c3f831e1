"""GPU (or CPU) throughput of the fast model and of a universal potential, batched vs one at a time.

Usage::

    python benchmarks/gpu.py [--smoke] [--device auto|cpu|cuda] [--out FILE]

One command, under 5 minutes, one JSON line (the last line printed): fast-model bands/s with
1 band per forward pass and with 64 (graphs built beforehand, so the numbers are the model's),
uMLIP (CHGNet and SevenNet-0, shipped in their wheels, through ``screener refine``'s batched
evaluators) images/s evaluated one at a time and in one batched call,
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
    """Bands/s of the shipped model: one band per call, and ``big_batch`` bands per call."""
    from screener.model.graphs import GraphCache
    from screener.model.predictor import load_predictor

    bands = _bands(n_bands)
    predictor = load_predictor(None, device)
    cache = GraphCache(predictor.graph_config)
    if predictor.members:
        for b in bands:
            cache.get(b)
    predictor.predict(bands[:2], batch_size=2, cache=cache)  # warm-up (kernels, allocator)
    out = {"model": predictor.version, "graph_members": len(predictor.members), "bands": len(bands),
           "mean_sites": round(sum(b.num_sites for b in bands) / len(bands), 1)}
    for name, bs in (("one", 1), ("batched", big_batch)):
        t0 = time.perf_counter()
        for i in range(0, len(bands), bs):
            predictor.predict(bands[i:i + bs], batch_size=bs, cache=cache)
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
        out[f"bands_per_s_{name}"] = round(len(bands) / (time.perf_counter() - t0), 3)
    out["batch_size"] = big_batch
    out["batched_over_one"] = round(out["bands_per_s_batched"] / out["bands_per_s_one"], 3)
    return out


def umlip(device: str, n_images: int, potentials: tuple[str, ...] = ("chgnet", "7net-0")) -> dict[str, Any]:
    """Images/s of each potential through ``screener refine``'s evaluators: one image per call vs one batched call."""
    from screener.core.errors import ScreenerError
    from screener.handoff.neb_io import structure_to_atoms
    from screener.handoff.potentials import load_potential

    band = _bands(1)[0]
    images = [structure_to_atoms(band.endpoint(i % band.n_images)) for i in range(n_images)]
    out: dict[str, Any] = {"images": n_images, "sites": len(images[0])}
    for name in potentials:
        try:
            ev = load_potential(name, device)
        except ScreenerError as exc:
            out[name] = {"skipped": str(exc)}
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ev.evaluate(images[:2])  # warm-up
            t0 = time.perf_counter()
            for a in images:
                ev.evaluate([a])
            one = time.perf_counter() - t0
            t0 = time.perf_counter()
            ev.evaluate(images)
            batched = time.perf_counter() - t0
        out[name] = {"images_per_s_one": round(n_images / one, 3), "images_per_s_batched": round(n_images / batched, 3),
                     "batched_over_one": round(one / batched, 3)}
    return out


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
