"""DFT hand-off: NEB-ready inputs for the hops of the top shortlisted materials.

A run directory (``screener run --out RUN_DIR``) holds tables, not structures. To hand a hop to
a DFT code its band is regenerated: the material's structure is fetched again from the run's
source, :func:`screener.pathways.search.find_pathways` runs with the run's pathway settings, and the
hop is picked by its id (a content hash, the same on every run). The structure hash in
``hops.parquet`` guards against a source that changed since the run.

Which hops: for each of the top ``N`` shortlisted (material, working ion) rows, every hop in
``path_hop_ids``: the hops (in both limits) whose predicted barrier is at or below the 1D
percolation barrier, i.e. the hops the ranking rests on. Hops off that path never decide the
rank, so computing them with DFT would not change the decision.

End points are the band's host plus the ion at its first and last image
(:meth:`Band.endpoint`), the images in between come from ASE's IDPP interpolation (about 3x
faster than pymatgen's IDPPSolver on 170-site bands). When ``screener refine`` ran, its relaxed
MLIP-NEB images are exported instead and the CSV says so.

The pure functions (:func:`neb_images`, :func:`closest_contact`, :func:`select_hops`...) take and
return pymatgen/ASE objects and dataframes; :func:`write_vasp_neb`, :func:`write_ase_neb` and
:func:`export_run` write files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from screener.core.errors import RunDirError, ScreenerError
from screener.core.hashing import structure_hash
from screener.handoff.neb_io import (
    DEFAULT_MIN_DISTANCE,
    DEFAULT_N_INTERMEDIATE,
    FORMATS,
    clear_hop_folder,
    closest_contact,
    hop_folder_name,
    neb_images,
    write_ase_neb,
    write_vasp_neb,
)
from screener.handoff.potentials import canonical_name, resolve
from screener.handoff.refined_table import current_rows
from screener.pathways.bands import build_band
from screener.pathways.search import find_pathways
from screener.screening.rundir import (
    RunData,
    load_run,
    pathway_config_of,
    source_spec_of,
)
from screener.sources.factory import make_source
from screener.sources.files import PathSource, read_structure

if TYPE_CHECKING:
    from ase import Atoms
    from pymatgen.core import Structure

    from screener.core.band import Band
    from screener.pathways.config import PathwayConfig


log = logging.getLogger(__name__)




MANIFEST_NAME = "exported.csv"


REFINED_DIR = "refined"


MANIFEST_COLUMNS = [
    "rank", "material_id", "formula", "working_ion", "limit", "hop_id", "hop_label", "length_A",
    "predicted_em_eV", "uncertainty_eV", "percolation_1d_eV", "images_from", "neb_em_eV",
    "refined_converged", "n_images", "n_atoms", "min_distance_A", "status", "folder", "message",
]


def select_hops(run: RunData, top: int) -> pd.DataFrame:
    """The hops to hand off: every hop in ``path_hop_ids`` of the top ``top`` shortlist rows.

    Returns:
        One row per hop (``hops.parquet`` columns plus ``rank`` and ``percolation_1d_eV``),
        ordered by rank, then predicted barrier, then hop id.
    """
    if top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
    if top > len(run.shortlist):
        log.warning("--top %d asks for more materials than the shortlist holds (%d): exporting all %d", top,
                    len(run.shortlist), len(run.shortlist))
    short = run.shortlist.sort_values("rank", kind="mergesort").head(top)
    rows = []
    for _, s in short.iterrows():
        ids = set(s["path_hop_ids"]) if s["path_hop_ids"] is not None else set()
        h = run.hops[(run.hops["material_id"] == s["material_id"])
                     & (run.hops["working_ion"] == s["working_ion"]) & run.hops["hop_id"].isin(ids)]
        h = h.assign(rank=int(s["rank"]), percolation_1d_eV=float(s["percolation_1d_eV"]))
        rows.append(h.sort_values(["predicted_em_eV", "hop_id"], kind="mergesort"))
    cols = [*run.hops.columns, "rank", "percolation_1d_eV"]
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.concat(rows, ignore_index=True)[cols]


def select_listed_hops(run: RunData, listed: pd.DataFrame) -> pd.DataFrame:
    """The run's hops named in ``listed`` (``hop_id``, and ``material_id``/``limit`` where given),
    in the order listed; ``rank`` is the material's shortlist rank (0 when not shortlisted).

    Raises:
        RunDirError: a listed hop is not in the run.
    """
    ranks = {(r.material_id, r.working_ion): int(r.rank) for r in run.shortlist.itertuples(index=False)}
    perc = {(r.material_id, r.working_ion): float(r.percolation_1d_eV) for r in run.structures.itertuples(index=False)}
    rows = []
    for item in listed.to_dict("records"):
        m = run.hops["hop_id"] == str(item["hop_id"])
        for col in ("material_id", "limit", "working_ion"):
            if item.get(col) is not None and item.get(col) == item.get(col):  # given and not NaN
                m &= run.hops[col] == item[col]
        found = run.hops[m]
        if not len(found):
            raise RunDirError(f"hop {item['hop_id']} ({item.get('material_id', '?')}) is not in {run.path}")
        for _, h in found.iterrows():
            key = (h["material_id"], h["working_ion"])
            rows.append({**h.to_dict(), "rank": ranks.get(key, 0), "percolation_1d_eV": perc.get(key, math.nan)})
    cols = [*run.hops.columns, "rank", "percolation_1d_eV"]
    out = pd.DataFrame(rows, columns=cols)
    return out.drop_duplicates(["material_id", "working_ion", "hop_id", "limit"]).reset_index(drop=True)


def fetch_structures(spec: str, items: list[tuple[str, str]],
                     sites: str = "occupied") -> dict[tuple[str, str], Structure | Exception]:
    """The structures of ``(material_id, working_ion)`` pairs from a source, or why not.

    Structure files are read directly (``material_id`` is the path relative to the source
    folder); other sources are asked for the ion's hosts once per ion (``sites`` as the run's, so
    that the empty frameworks of a ``voids`` run are found again).
    """
    src = make_source(spec, sites=sites)
    out: dict[tuple[str, str], Structure | Exception] = {}
    if isinstance(src, PathSource):
        root = src.path if src.path.is_dir() else src.path.parent
        for mid, ion in items:
            try:
                out[(mid, ion)] = read_structure(root / mid)
            except ScreenerError as exc:
                out[(mid, ion)] = exc
        return out
    for ion in dict.fromkeys(i for _, i in items):
        wanted = {m for m, i in items if i == ion}
        found = {h.item: h for h in src.fetch(ion) if h.item in wanted}
        for mid in wanted:
            h = found.get(mid)
            if h is None:
                out[(mid, ion)] = RunDirError(f"{mid} is no longer in the source {spec!r} for {ion}")
            elif h.structure is None:
                out[(mid, ion)] = h.error or RunDirError(f"{mid}: unreadable in the source")
            else:
                out[(mid, ion)] = h.structure
    return out


def hop_bands(structure: Structure, ion: str, config: PathwayConfig, hop_ids: list[str],
              expected_hash: str | None = None) -> dict[str, Band | Exception]:
    """The bands of some hops of one host, regenerated exactly as the run built them.

    Args:
        structure: the host structure as the source gives it.
        ion: working ion.
        config: the run's pathway settings (:func:`pathway_config_of`).
        hop_ids: the hops wanted.
        expected_hash: ``structure_hash`` recorded in ``hops.parquet``; a different hash means the
            source changed since the run and every hop fails.

    Returns:
        ``{hop_id: Band}``, or the exception for a hop that could not be rebuilt.
    """

    try:
        pw = find_pathways(structure, ion, config)
    except Exception as exc:  # noqa: BLE001 - one host's failure is rows, not a crash
        return {h: exc for h in hop_ids}
    if expected_hash and structure_hash(pw.host_structure) != expected_hash:
        err = RunDirError(f"structure hash {structure_hash(pw.host_structure)} differs from the run's "
                          f"{expected_hash}: the source changed since the run")
        return {h: err for h in hop_ids}
    out: dict[str, Band | Exception] = {}
    for hid in hop_ids:
        try:
            out[hid] = build_band(pw, pw.hop(hid))
        except KeyError:
            out[hid] = RunDirError(f"hop {hid} not found again (different pathway settings?)")
        except Exception as exc:  # noqa: BLE001
            out[hid] = exc
    return out


def regenerate_bands(run: RunData, selected: pd.DataFrame, source: str | None = None,
                     min_width: float | None = None) -> dict[tuple[str, str, str], Band | Exception]:
    """Bands of the selected hops, keyed by ``(material_id, working_ion, hop_id)``.

    Args:
        run: the run.
        selected: rows of :func:`select_hops`.
        source: where to fetch the structures (default: what ``run.json`` records).
        min_width: supercell width (Å) of the bands instead of the run's; hop ids do not depend
            on it, so a smaller value gives smaller NEB cells of the same hops.
    """
    spec = source_spec_of(run, source)
    config = pathway_config_of(run.info)
    if min_width is not None:
        config = dataclasses.replace(config, min_width=float(min_width))
    pairs = list(dict.fromkeys(zip(selected["material_id"], selected["working_ion"])))
    structures = fetch_structures(spec, pairs, config.sites)
    out: dict[tuple[str, str, str], Band | Exception] = {}
    for mid, ion in pairs:
        rows = selected[(selected["material_id"] == mid) & (selected["working_ion"] == ion)]
        ids = rows["hop_id"].tolist()
        s = structures[(mid, ion)]
        if isinstance(s, Exception):
            bands: dict[str, Band | Exception] = {h: s for h in ids}
        else:
            bands = hop_bands(s, ion, config, ids, expected_hash=str(rows["structure_hash"].iloc[0]))
        out.update({(mid, ion, h): b for h, b in bands.items()})
    return out


def read_refined_images(run: RunData, material_id: str, working_ion: str, hop_id: str,
                        potential: str | None = None) -> tuple[list[Atoms], pd.Series] | None:
    """The relaxed NEB images ``screener refine`` stored for a hop, with its row.

    The newest successful row wins when several potentials refined the hop, unless
    ``potential`` names one.
    """
    from ase.io import read

    ref = run.refined
    if ref is None or not len(ref):
        return None
    rows = ref[(ref["material_id"] == material_id) & (ref["working_ion"] == working_ion)
               & (ref["hop_id"] == hop_id) & ref["images_path"].fillna("").astype(bool)]
    if potential:
        rows = rows[rows["potential"].map(canonical_name) == canonical_name(potential)]
    if not len(rows):
        return None
    # a row of an earlier screener gets today's barrier
    row = current_rows(rows.sort_values("finished_at", kind="mergesort").iloc[[-1]], run.path).iloc[0]
    path = run.path / str(row["images_path"])
    try:
        images = read(path, index=":")
    except Exception as exc:  # noqa: BLE001 - a missing or broken file falls back to IDPP
        log.warning("%s: cannot read refined images (%s); exporting IDPP images", path, exc)
        return None
    for im in images:
        im.calc = None
    return list(images), row


@dataclass
class ExportOptions:
    """Settings of :func:`export_run`.

    Attributes:
        top: shortlist rows whose path hops are exported.
        fmt: ``vasp`` (``00/POSCAR`` ...) or ``ase`` (``neb.traj``).
        n_intermediate: images between the end points (ignored for refined images).
        min_distance: refuse a hop whose images bring two atoms closer than this (Å).
        idpp_steps: optimiser steps on the IDPP surface.
        use_refined: export ``screener refine``'s relaxed images where they exist.
        refined_potential: prefer this potential's refined images.
        source: where to fetch structures again (default: what ``run.json`` records).
        min_width: perpendicular width (Å) of the exported supercells (default: the run's, 9.5 Å
            unless ``run --min-width`` said otherwise); smaller gives fewer atoms.
        vasp_inputs: write an ``INCAR`` and ``KPOINTS`` stub for a VASP CI-NEB next to the images.
        hops: export exactly these hops (``screener suggest --json`` output, or a table with
            ``hop_id`` and optionally ``material_id``, ``limit``) instead of the top shortlist's.
    """

    top: int = 5
    fmt: str = "vasp"
    n_intermediate: int = DEFAULT_N_INTERMEDIATE
    min_distance: float = DEFAULT_MIN_DISTANCE
    idpp_steps: int = 100
    use_refined: bool = True
    refined_potential: str | None = None
    source: str | None = None
    min_width: float | None = None
    vasp_inputs: bool = True
    hops: pd.DataFrame | None = None


def _json_value(v: Any) -> Any:
    """A plain JSON value: numpy scalars unwrapped, NaN/inf as null."""
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and not math.isfinite(v) else v


def export_run(run_dir: str | Path, out: str | Path, options: ExportOptions | None = None,
               progress: Any = None) -> pd.DataFrame:
    """Write NEB inputs for the path hops of the top shortlisted materials, and a manifest.

    Args:
        run_dir: a ``screener run`` output folder.
        out: folder for the hop folders and ``exported.csv``.
        options: what and how to export.
        progress: a rich Progress to advance, or None.

    Returns:
        The manifest (also written to ``out/exported.csv``): one row per selected hop with its
        predicted barrier, uncertainty, where its images came from, the closest contact and a
        ``status`` (``exported``, ``refused: close contact`` or ``failed``).

    Raises:
        RunDirError: the run directory is unreadable or its source cannot be reopened.
    """
    opt = options or ExportOptions()
    if opt.fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {opt.fmt!r}")
    if opt.refined_potential:
        resolve(opt.refined_potential)  # an unknown name: PotentialNotInstalledError, before any work
    run = load_run(run_dir)
    out = Path(out)
    selected = select_hops(run, opt.top) if opt.hops is None else select_listed_hops(run, opt.hops)
    multi_ion = run.shortlist["working_ion"].nunique() > 1
    t0 = time.perf_counter()
    need_bands = selected
    refined: dict[tuple[str, str, str], tuple[list[Atoms], pd.Series]] = {}
    if opt.use_refined and run.refined is not None:
        for _, r in selected.iterrows():
            got = read_refined_images(run, r["material_id"], r["working_ion"], r["hop_id"], opt.refined_potential)
            if got is not None:
                refined[(r["material_id"], r["working_ion"], r["hop_id"])] = got
        keys = list(zip(selected["material_id"], selected["working_ion"], selected["hop_id"]))
        need_bands = selected[[k not in refined for k in keys]]
        if opt.refined_potential and len(selected) and not refined:
            log.warning("no refined images of %s for the selected hops; exporting IDPP images",
                        resolve(opt.refined_potential).name)
    bands = regenerate_bands(run, need_bands, opt.source, opt.min_width) if len(need_bands) else {}
    log.info("%d hops of %d materials selected; bands rebuilt in %.1f s", len(selected),
             selected[["material_id", "working_ion"]].drop_duplicates().shape[0], time.perf_counter() - t0)
    task = progress.add_task("export", total=len(selected)) if progress is not None else None
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    for _, r in selected.iterrows():
        key = (r["material_id"], r["working_ion"], r["hop_id"])
        folder = hop_folder_name(r["material_id"], r["hop_id"], r["working_ion"] if multi_ion else None)
        rec = {c: r.get(c) for c in MANIFEST_COLUMNS if c in r.index}
        rec.update(images_from="", neb_em_eV=math.nan, refined_converged=None, n_images=0, n_atoms=0,
                   min_distance_A=math.nan, status="", folder="", message="")
        try:
            clear_hop_folder(out / folder)
            if key in refined:
                images, ref_row = refined[key]
                rec.update(images_from=f"refined:{canonical_name(ref_row['potential'])}",
                           neb_em_eV=float(ref_row["neb_em_eV"]),
                           refined_converged=bool(ref_row["converged"]) if pd.notna(ref_row["converged"]) else False)
            else:
                band = bands[key]
                if isinstance(band, Exception):
                    raise band
                images = neb_images(band, opt.n_intermediate, idpp_steps=opt.idpp_steps)
                rec["images_from"] = "idpp"
            d, k, i, j = closest_contact(images)
            rec.update(n_images=len(images), n_atoms=len(images[0]), min_distance_A=d)
            if d < opt.min_distance:
                sym = images[k].get_chemical_symbols()
                rec.update(status="refused: close contact",
                           message=f"image {k}: atoms {i} ({sym[i]}) and {j} ({sym[j]}) {d:.3f} Å apart "
                                   f"< {opt.min_distance} Å; nothing written")
                log.warning("%s %s: %s", r["material_id"], r["hop_id"], rec["message"])
            else:
                if opt.fmt == "vasp":
                    write_vasp_neb(images, out / folder, inputs=opt.vasp_inputs)
                else:
                    write_ase_neb(images, out / folder)
                rec.update(status="exported", folder=folder)
                meta = {k2: _json_value(v) for k2, v in rec.items()}
                meta.update(source=r.get("source"), structure_hash=r.get("structure_hash"),
                            model_version=r.get("model_version"), run_dir=str(run.path))
                (out / folder / "hop.json").write_text(json.dumps(meta, indent=1, default=str))
        except Exception as exc:  # noqa: BLE001 - one hop's failure is a row
            rec.update(status="failed", message=f"{type(exc).__name__}: {exc}")
            log.warning("%s %s: export failed: %s", r["material_id"], r["hop_id"], rec["message"])
        rows.append(rec)
        if progress is not None:
            progress.advance(task)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest.to_csv(out / MANIFEST_NAME, index=False)
    log.info("exported %d of %d hops to %s in %.1f s", int((manifest["status"] == "exported").sum()),
             len(manifest), out, time.perf_counter() - t0)
    return manifest
