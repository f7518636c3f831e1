"""GPU (or CPU) throughput of the fast model and of a universal potential, batched vs one at a time.

Usage::

    python benchmarks/gpu.py [--smoke] [--device auto|cpu|cuda] [--out FILE]

One command, under 5 minutes, one JSON line (the last line printed): fast-model bands/s with
1 band per forward pass and with 64 (graphs built beforehand, so the numbers are the model's),
uMLIP (CHGNet and SevenNet-0, shipped in their wheels, through ``screener refine``'s batched
evaluators) images/s evaluated one at a time and in one batched call (as many images as half the
free memory holds, up to 16), and the peak GPU memory (CUDA) or peak resident memory (CPU). It runs unchanged on a CPU (CI runs
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


#: Peaks (GPU, resident) seen before each reset of the peak statistics, so that the run's peak survives them.
_PEAKS: list[tuple[float, float]] = []


def _peak_memory(device: str) -> dict[str, float | None]:
    import torch

    from screener.core.memory import peak_rss_mib

    gpu = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    gpu = max([gpu or 0.0, *(g for g, _ in _PEAKS)]) if device == "cuda" else None
    rss = max([peak_rss_mib(), *(r for _, r in _PEAKS)])
    return {"peak_gpu_mib": round(gpu, 1) if gpu is not None else None, "peak_rss_mib": round(rss, 1)}


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


def _memory_now_mib(device: str) -> float:
    """Memory in use (CUDA: allocated by torch; CPU: resident size, after a ``malloc_trim``)."""
    import torch

    if device == "cuda":
        return torch.cuda.memory_allocated() / 2**20
    import gc

    gc.collect()
    try:  # hand the heap's free memory back, so that what the next call takes shows in VmRSS
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figure then errs low
        pass
    import psutil  # a dependency of Dask's distributed

    return psutil.Process().memory_info().rss / 2**20


def _reset_peak(device: str) -> None:
    """Start a new peak: CUDA's peak statistics, or Linux's ``VmHWM`` (``clear_refs`` 5)."""
    import torch

    from screener.core.memory import peak_rss_mib

    _PEAKS.append((torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0, peak_rss_mib()))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:  # not Linux, or not allowed: the peak stays the process's, and batches err small
        pass


def _peak_mib(device: str) -> float:
    import torch

    from screener.core.memory import peak_rss_mib

    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mib()


def _free_mib(device: str) -> float:
    """Memory left for a batch (CUDA: free device memory; CPU: available memory)."""
    import torch

    if device == "cuda":
        return torch.cuda.mem_get_info()[0] / 2**20
    import psutil

    return psutil.virtual_memory().available / 2**20


def umlip(device: str, n_images: int, potentials: tuple[str, ...] = ("chgnet", "7net-0")) -> dict[str, Any]:
    """Images/s of each potential through ``screener refine``'s evaluators: one image per call vs one batched call.

    Energies with forces keep every activation for the backward pass: CHGNet takes ~2 GiB per
    image of this ~220-site band on a CPU. The batch is the ``n_images`` asked for, or as many as
    half of the free memory holds at the measured cost of one image (reported as ``images``).
    """
    from screener.core.errors import ScreenerError
    from screener.handoff.neb_io import structure_to_atoms
    from screener.handoff.potentials import load_potential

    band = _bands(1)[0]
    images = [structure_to_atoms(band.endpoint(i % band.n_images)) for i in range(n_images)]
    out: dict[str, Any] = {"images_asked": n_images, "sites": len(images[0])}
    for name in potentials:
        try:
            ev = load_potential(name, device)
        except ScreenerError as exc:
            out[name] = {"skipped": str(exc)}
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            before = _memory_now_mib(device)  # before the first call: what is held after it stays held
            _reset_peak(device)
            ev.evaluate(images[:1])  # warm-up (kernels, allocator), and the cost of one image
            per_image = max(_peak_mib(device) - before, 1.0)
            n = max(1, min(n_images, int(0.5 * _free_mib(device) / per_image)))
            t0 = time.perf_counter()
            for a in images[:n]:
                ev.evaluate([a])
            one = time.perf_counter() - t0
            _reset_peak(device)
            t0 = time.perf_counter()
            ev.evaluate(images[:n])
            batched = time.perf_counter() - t0
            peak = _peak_mib(device)
        out[name] = {"images": n, "mib_per_image": round(per_image, 1), "peak_batched_mib": round(peak, 1),
                     "images_per_s_one": round(n / one, 3), "images_per_s_batched": round(n / batched, 3),
                     "batched_over_one": round(one / batched, 3)}
        del ev
        if device == "cuda":
            import torch

            torch.cuda.empty_cache()
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
