"""Seconds per structure of the pathway stage: hops, bands of every hop x limit, percolation.

Usage: ``python benchmarks/bench_pathways.py [--repeat 3] [--idpp] [--voids]``. Goal: <= 1 s per
typical Materials Project cell for hops + bands + percolation (IDPP export is separate and slower);
with ``--voids``, void analysis (:func:`screener.pathways.voids.find_voids`) <= 2 s for cells up to
~60 sites, timed on the primitive cell as the screen runs it.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pymatgen.util
from pymatgen.core import Lattice, Structure

from screener.handoff.neb_io import neb_images
from screener.pathways.bands import build_band
from screener.pathways.config import PathwayConfig
from screener.pathways.percolation import percolation_barriers
from screener.pathways.search import find_pathways

PMG = Path(pymatgen.util.__file__).parent / "structures"


def structures() -> list[tuple[str, Structure, str]]:
    """The test hosts: pymatgen's shipped structures with a working ion, and built ones."""
    out = [(name, Structure.from_file(PMG / f"{name}.json"), ion) for name, ion in [
        ("LiFePO4", "Li"), ("Li3V2(PO4)3", "Li"), ("NaFePO4", "Na"), ("Li2O", "Li"),
        ("Li2O2", "Li"), ("K2O2", "K"),
    ]]
    x = 0.3875  # Fd-3m origin choice 1
    out.append(("MgMn2O4 (56-site conv.)", Structure.from_spacegroup(
        "Fd-3m", Lattice.cubic(8.50), ["Mg", "Mn", "O"], [[0, 0, 0], [5 / 8] * 3, [x] * 3]), "Mg"))
    out.append(("LiCoO2 (hex.)", Structure.from_spacegroup(
        "R-3m", Lattice.hexagonal(2.8156, 14.0542), ["Li", "Co", "O"],
        [[0, 0, 0], [0, 0, 0.5], [0, 0, 0.2396]]), "Li"))
    return out


def bench(structure: Structure, ion: str, config: PathwayConfig) -> dict[str, float]:
    """Time one structure: find hops, build every band, percolation with barrier = length."""
    t0 = time.perf_counter()
    pw = find_pathways(structure, ion, config)
    t1 = time.perf_counter()
    sizes = [build_band(pw, h).num_sites for h in pw.hops]
    t2 = time.perf_counter()
    pw.percolation({h.hop_id: h.length_A for h in pw.hops})
    percolation_barriers(pw.edges, {h.hop_label: h.length_A for h in pw.hops})
    t3 = time.perf_counter()
    return {"sites": len(pw.structure), "hops": len(pw.hops), "find": t1 - t0,
            "bands": t2 - t1, "perc": t3 - t2, "total": t3 - t0, "max_band": max(sizes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs per structure (best kept)")
    parser.add_argument("--idpp", action="store_true", help="also time IDPP of the first band")
    parser.add_argument("--voids", action="store_true", help="also time the void analysis of each cell")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    config = PathwayConfig()
    items = structures()
    find_pathways(items[0][1], items[0][2], config)  # warm-up: imports, spglib
    print(f"{'structure':26s} {'sites':>5s} {'hops':>4s} {'find s':>7s} {'bands s':>7s} "
          f"{'perc s':>7s} {'total s':>7s} {'max band':>8s}")
    totals = []
    for name, s, ion in items:
        runs = [bench(s, ion, config) for _ in range(max(1, args.repeat))]
        r = min(runs, key=lambda x: x["total"])
        totals.append(r["total"])
        print(f"{name:26s} {r['sites']:5d} {r['hops']:4d} {r['find']:7.3f} {r['bands']:7.3f} "
              f"{r['perc']:7.3f} {r['total']:7.3f} {r['max_band']:8d}")
        if args.voids:
            from screener.pathways.voids import find_voids

            prim = s.get_primitive_structure()
            for cell, what in ((prim, "primitive"), (s, "input")):
                if what == "input" and len(s) == len(prim):
                    continue
                t = time.perf_counter()
                found = find_voids(cell, ion)
                print(f"{'':26s} voids: {len(found)} sites in the {len(cell)}-site {what} cell in "
                      f"{time.perf_counter() - t:.2f} s")
        if args.idpp:
            pw = find_pathways(s, ion, config)
            band = build_band(pw, pw.hops[-1])
            t = time.perf_counter()
            neb_images(band)
            print(f"{'':26s} IDPP of a {band.num_sites}-site band: {time.perf_counter() - t:.2f} s")
    print(f"mean {sum(totals) / len(totals):.3f} s per structure, max {max(totals):.3f} s")


if __name__ == "__main__":
    main()
