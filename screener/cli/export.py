"""``screener export``: NEB-ready inputs (VASP or ASE) for the path hops of the top candidates."""

from __future__ import annotations

import argparse
import logging
import time

from screener.cli.options import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    HelpFormatter,
    add_min_width_option,
    add_run_source_argument,
)
from screener.core.errors import ScreenerError

log = logging.getLogger("screener.export")

_DESCRIPTION = """\
Write NEB starting points for DFT: for each of the top N shortlisted materials of RUN_DIR, every
hop of its 1D percolation path (shortlist.parquet's path_hop_ids: the hops, in both limits,
whose predicted barrier is at or below the material's 1D barrier, i.e. the hops its rank rests
on) gets a folder <material>__<hop_id> holding the two end points (host + ion at the initial and
final site of the hop's band) and IDPP-interpolated images between them:
  --format vasp   00/POSCAR ... NN/POSCAR (VASP's NEB layout; set IMAGES = NN-1), atoms grouped
                  by element in the same order in every image;
  --format ase    neb.traj, all images in one ASE trajectory.
Each folder also has hop.json; OUT/exported.csv lists every selected hop with its predicted
barrier, uncertainty, where the images came from, the closest interatomic distance and a status.
Hops whose images bring two atoms closer than --min-distance are refused (listed, not written).
When `screener refine` ran on RUN_DIR, its relaxed MLIP-NEB images are exported instead (column
images_from = refined:<potential>), unless --no-refined.

Bands are rebuilt from the run's source with the run's pathway settings (run.json, which also
records the folder or file a run on structure files read); --source points elsewhere, e.g. when
the files have moved.

Exit codes: 0 every selected hop exported; 3 some hops refused or failed (see exported.csv);
2 usage error (no run directory, no source folder...); 1 crash."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-command."""
    from screener.handoff.neb_io import (
        DEFAULT_MIN_DISTANCE,
        DEFAULT_N_INTERMEDIATE,
        FORMATS,
    )

    p = sub.add_parser("export", help="write NEB-ready inputs (VASP/ASE) for the top candidates' path hops",
                       description=_DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="output folder of `screener run`")
    p.add_argument("--top", type=int, default=5, metavar="N",
                   help="export the path hops of the N best-ranked shortlisted materials (default: %(default)s)")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="vasp",
                   help="vasp: 00/POSCAR..NN/POSCAR folders; ase: one neb.traj (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the hop folders and exported.csv into")
    p.add_argument("--images", type=int, default=DEFAULT_N_INTERMEDIATE, metavar="N",
                   help="intermediate images between the two end points (default: %(default)s); "
                        "refined images keep the count refine used")
    p.add_argument("--min-distance", type=float, default=DEFAULT_MIN_DISTANCE, metavar="Å",
                   help="refuse a hop whose images bring two atoms closer than this (default: %(default)s Å)")
    p.add_argument("--idpp-steps", type=int, default=100, metavar="N",
                   help="most optimiser steps on the IDPP surface per hop (default: %(default)s)")
    p.add_argument("--no-refined", action="store_true",
                   help="export IDPP images even where `screener refine` stored relaxed ones")
    p.add_argument("--potential", default=None,
                   help="prefer refined images of this potential (default: the newest refinement of each hop)")
    add_min_width_option(p, default=None, what=" (default: the run's, 9.5 Å unless `run --min-width` "
                                               "said otherwise); hop ids do not depend on it")
    p.add_argument("--no-vasp-inputs", action="store_true",
                   help="with --format vasp, write only the image folders, without the INCAR and "
                        "KPOINTS stub for a CI-NEB")
    p.add_argument("--hops", default=None, metavar="FILE",
                   help="export exactly these hops: `screener suggest --json` output, or a CSV with hop_id "
                        "(and material_id, limit); replaces --top")
    add_run_source_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``screener export``; returns the exit code."""
    from screener.core.progress import progress_bar
    from screener.handoff.export import ExportOptions, export_run

    if args.top < 1 or args.images < 1 or args.idpp_steps < 0 or (args.min_width is not None and args.min_width <= 0):
        log.error("--top, --images and --min-width must be positive, --idpp-steps non-negative")
        return EXIT_USAGE
    listed = None
    if args.hops:
        from screener.loop.suggest import hops_from_file

        try:
            listed = hops_from_file(args.hops)
        except (OSError, ValueError) as exc:
            log.error("--hops %s: %s", args.hops, exc)
            return EXIT_USAGE
    opt = ExportOptions(hops=listed, top=args.top, fmt=args.fmt, n_intermediate=args.images, min_distance=args.min_distance,
                        idpp_steps=args.idpp_steps, use_refined=not args.no_refined,
                        refined_potential=args.potential, source=args.source, min_width=args.min_width,
                        vasp_inputs=not args.no_vasp_inputs)
    t0 = time.perf_counter()
    try:
        with progress_bar(args.quiet) as progress:
            manifest = export_run(args.run_dir, args.out, opt, progress=progress)
    except (ScreenerError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    n_ok = int((manifest["status"] == "exported").sum())
    print(f"{n_ok} of {len(manifest)} hops exported ({args.fmt}) to {args.out} in "
          f"{time.perf_counter() - t0:.1f} s; see {args.out}/exported.csv")
    if not len(manifest):
        log.warning("nothing selected: the shortlist of %s is empty", args.run_dir)
    return EXIT_OK if n_ok == len(manifest) else EXIT_PARTIAL
