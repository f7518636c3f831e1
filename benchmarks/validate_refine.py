"""NEB barriers of a universal potential on the literature training set, cached per band.

Usage::

    python benchmarks/validate_refine.py --potential chgnet [--max-sites 50] [--budget-min 60]
        [--band-limit-min 10] [--images 7]

Runs ``screener refine``'s NEB (the published MLIP-NEB protocol, :class:`RefineSettings` defaults)
on every training band with at most ``--max-sites`` sites, smallest first, and keeps one JSON
record per band under ``benchmarks/results/neb_cache/<potential>/`` (named by the band's content,
the settings and the potential's version), so a rerun computes only what is missing: split a long
validation over several sessions with ``--budget-min``. Then writes
``benchmarks/results/refine_validation_<potential>.csv``: one row per band with a record (the DFT
barrier, the NEB barrier and its quality signals). ``screener evaluate --potential`` and
``benchmarks/fit_combination.py`` read the same cache.

Needs the training set (``../shared/data/em-dataset`` or ``--data``). Nothing here is held out.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "em-dataset" / "train_bands.json"


def main() -> None:
    from screener.handoff.neb import RefineSettings
    from screener.handoff.validation import neb_records
    from screener.training.dataset import read_entries

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--potential", default="chgnet")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--max-sites", type=int, default=50, help="bands with at most this many sites")
    p.add_argument("--budget-min", type=float, default=None,
                   help="stop computing after this many minutes (0: only collect the cached records)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--images", type=int, default=None, metavar="N",
                   help="intermediate NEB images (default: RefineSettings'); other counts are cached apart and "
                        "written to results/refine_images/<potential>_<N>images.csv, not to the validation "
                        "table the combination is fitted on")
    p.add_argument("--band-limit-min", type=float, default=None,
                   help="stop one band's NEB after this many minutes (cached as a time-out; a longer limit "
                        "computes it again)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    entries = [e for e in read_entries(args.data) if e.band is not None and e.target is not None]
    chosen = sorted((e for e in entries if e.band.num_sites <= args.max_sites), key=lambda e: (e.band.num_sites, e.jid))
    settings = RefineSettings(potential=args.potential, threads=args.threads)
    if args.images is not None:
        settings = RefineSettings(potential=args.potential, threads=args.threads, n_intermediate=args.images)
    cache = RESULTS / "neb_cache" / args.potential
    t0 = time.perf_counter()

    def done(i: int, rec: dict) -> None:
        e = chosen[i]
        logging.info("%d/%d jid %s (%d sites): DFT %.3f NEB %.3f [%s] %.0fs", i + 1, len(chosen), e.jid,
                     e.band.num_sites, e.target, rec.get("em_eV", float("nan")), rec["status"],
                     time.perf_counter() - t0)

    budget = args.budget_min * 60 if args.budget_min is not None else None
    limit = args.band_limit_min * 60 if args.band_limit_min is not None else None
    records = neb_records([e.band for e in chosen], settings, cache, done, budget, limit)
    rows = [{"jid": e.jid, "label": e.label, "ion": e.band.ion, "n_sites": e.band.num_sites, "dft_em_eV": e.target,
             **{k: v for k, v in r.items() if k != "energies_eV"}} for e, r in zip(chosen, records) if r is not None]
    if settings.n_intermediate == RefineSettings().n_intermediate:
        out = RESULTS / f"refine_validation_{args.potential}.csv"
    else:
        out = RESULTS / "refine_images" / f"{args.potential}_{settings.n_intermediate}images.csv"
        out.parent.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"{len(rows)} of {len(chosen)} bands with a record -> {out}")


if __name__ == "__main__":
    main()
