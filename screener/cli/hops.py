"""``screener hops``: list the distinct hops of the working ion in structure files."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from screener.cli.options import HelpFormatter, add_pathway_options, pathway_config
from screener.core.errors import ScreenerError
from screener.pathways.config import LIMITS, PathwayConfig
from screener.pathways.network import HostPathways
from screener.pathways.percolation import percolation_dimension
from screener.pathways.search import find_pathways
from screener.sources.files import read_structure

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE, EXIT_PARTIAL = 0, 2, 3

_DESCRIPTION = """\
List the symmetry-distinct hops of the working ion between its sites, up to a hop-length cutoff
(pymatgen-analysis-diffusion's MigrationGraph), once per limit:
  vacancy  discharged host: every other working-ion site occupied, the end site empty;
  dilute   charged host: every other working ion removed.
Each hop has a stable id (derived from its content, the same on every run) and the size of the
band (supercell host + 5 images of the ion) the model would read for it; bands above
--max-band-sites are marked "too large" and would be refused.

Exit codes: 0 all files done; 2 usage error (bad option, missing file);
3 some files failed (unreadable, disordered, no working ion, no hop...: a message on stderr)."""


def register(subparsers: Any) -> None:
    """Add the ``hops`` sub-command to the CLI."""
    p = subparsers.add_parser(
        "hops",
        help="list the distinct hops of the working ion in structure files",
        description=_DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="structure file(s) pymatgen reads: CIF, POSCAR/CONTCAR, pymatgen JSON...")
    p.add_argument("--ion", required=True,
                   help="element symbol of the working (migrating) ion, e.g. Li, Na, Mg")
    p.add_argument("--limit", choices=[*LIMITS, "both"], default="both",
                   help="which limit(s) to list each hop in")
    p.add_argument("--symprec", type=float, default=0.1, metavar="Å",
                   help="symmetry tolerance used to group equivalent hops")
    add_pathway_options(p)
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of hop objects (hop_id, length_A, limit, multiplicity, "
                        "site coordinates, band size...) instead of a table")
    p.set_defaults(func=run_hops)


def _config(args: argparse.Namespace) -> PathwayConfig:
    limits = LIMITS if args.limit == "both" else (args.limit,)
    return pathway_config(args, limits=limits, symprec=args.symprec)


def _rows(path: str, pw: HostPathways) -> list[dict[str, Any]]:
    rows = []
    for hop in pw.hops:
        row: dict[str, Any] = {"source": path, "formula": pw.formula,
                               "spacegroup": pw.spacegroup[0], **hop.to_dict()}
        row["length_A"] = round(hop.length_A, 4)
        row["isite_frac"] = [round(x, 6) for x in hop.isite_frac]
        row["esite_frac"] = [round(x, 6) for x in hop.esite_frac]
        row["band_sites"] = pw.band_size(hop)
        row["band_too_large"] = row["band_sites"] > pw.config.max_band_sites
        row["supercell_matrix"] = pw.supercell_matrix(hop).tolist()
        rows.append(row)
    return rows


def _print_table(path: str, pw: HostPathways, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 140)
    reach = percolation_dimension(pw.edges)
    voids = f" ({len(pw.void_sites)} of them empty: voids)" if pw.void_sites else ""
    title = (f"{path}: {pw.formula} ({pw.spacegroup[0]}), {len(pw.ion_sites)} {pw.ion} sites{voids} per "
             f"cell of {len(pw.host_structure)}; hops ≤ {pw.cutoff_A:.2f} Å percolate in {reach}D")
    table = Table()
    table.add_column("hop id", no_wrap=True)
    table.add_column("limit")
    table.add_column("sites (Wyckoff: frac → frac)")
    if pw.void_sites:
        table.add_column("ends")
    table.add_column("length Å", justify="right")
    table.add_column("mult.", justify="right")
    table.add_column("band sites", justify="right")
    for hop, row in zip(pw.hops, rows, strict=True):
        i = ", ".join(f"{round(x, 3) + 0.0:.3f}" for x in hop.isite_frac)
        e = ", ".join(f"{round(x, 3) + 0.0:.3f}" for x in hop.esite_frac)
        size = str(row["band_sites"]) + (" (too large)" if row["band_too_large"] else "")
        kinds = [f"{hop.isite_kind} → {hop.esite_kind}"] if pw.void_sites else []
        table.add_row(hop.hop_id, hop.limit,
                      f"{hop.isite_wyckoff}: ({i}) → {hop.esite_wyckoff}: ({e})", *kinds,
                      f"{hop.length_A:.3f}", str(hop.multiplicity), size)
    console.print(title, soft_wrap=True, markup=False, highlight=False)
    console.print(table)


def run_hops(args: argparse.Namespace) -> int:
    """List the hops of each file; return the exit code."""
    from pymatgen.core import Element

    try:
        Element(args.ion)
    except ValueError:
        print(f"error: --ion {args.ion!r} is not an element symbol", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    missing = [f for f in args.files if not _is_file(f)]
    if missing:
        for f in missing:
            print(f"error: {f}: no such file", file=sys.stderr)
        return EXIT_USAGE

    all_rows: list[dict[str, Any]] = []
    failed = 0
    for path in args.files:
        try:
            pw = find_pathways(read_structure(path), args.ion, config)
            rows = _rows(path, pw)
        except ScreenerError as exc:
            failed += 1
            print(f"error: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if args.json:
            all_rows.extend(rows)
        else:
            _print_table(path, pw, rows)
    if args.json:
        try:  # one object per line: readable, and still one JSON list
            sys.stdout.write("[\n" + ",\n".join(json.dumps(r) for r in all_rows) + "\n]\n")
            sys.stdout.flush()
        except BrokenPipeError:  # e.g. piped into head
            pass
    return EXIT_PARTIAL if failed else EXIT_OK


def _is_file(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_file()
