"""DFT hand-off: NEB-ready inputs for the hops of the top shortlisted materials.

A run directory (``screener run --out RUN_DIR``) holds tables, not structures. To hand a hop to
a DFT code its band is regenerated: the material's structure is fetched again from the run's
source, :func:`screener._pathways.find_pathways` runs with the run's pathway settings, and the
hop is picked by its id (a content hash, the same on every run). The structure hash in
``hops.parquet`` guards against a source that changed since the run.

Which hops: for each of the top ``N`` shortlisted (material, working ion) rows, every hop in
``path_hop_ids``: the hops (in both limits) whose predicted barrier is at or below the 1D
percolation barrier, i.e. the hops the ranking rests on. Hops off that path never decide the
rank, so computing them with DFT would not change the decision.

End points are the band's host plus the ion at its first and last image
(:meth:`Band.endpoint`), the images in between come from ASE's IDPP interpolation (about 3x
faster than pymatgen's IDPPSolver on 170-site bands). When ``screener refine`` ran, its relaxed
CI-NEB images are exported instead and the CSV says so.

The pure functions (:func:`neb_images`, :func:`closest_contact`, :func:`select_hops`...) take and
return pymatgen/ASE objects and dataframes; :func:`write_vasp_neb`, :func:`write_ase_neb` and
:func:`export_run` write files.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from screener._errors import ScreenerError

if TYPE_CHECKING:
    from ase import Atoms
    from pymatgen.core import Structure

    from screener._band import Band
    from screener._pathways import PathwayConfig

log = logging.getLogger(__name__)

#: Intermediate NEB images between the two end points (VASP ``IMAGES``).
DEFAULT_N_INTERMEDIATE = 5
#: Smallest interatomic distance (Å) accepted in any exported image.
DEFAULT_MIN_DISTANCE = 0.5
FORMATS = ("vasp", "ase")
MANIFEST_NAME = "exported.csv"
REFINED_TABLE = "refined.parquet"
REFINED_DIR = "refined"

MANIFEST_COLUMNS = [
    "rank", "material_id", "formula", "working_ion", "limit", "hop_id", "hop_label", "length_A",
    "predicted_em_eV", "uncertainty_eV", "percolation_1d_eV", "images_from", "neb_em_eV",
    "refined_converged", "n_images", "n_atoms", "min_distance_A", "status", "folder", "message",
]


class RunDirError(ScreenerError):
    """A run directory is missing, incomplete, or its source cannot be opened again."""

    stage = "handoff"


# ----------------------------------------------------------------------------- run directories
@dataclass
class RunData:
    """The tables and metadata of one run directory.

    Attributes:
        path: the run directory.
        info: the parsed ``run.json``.
        hops: ``hops.parquet``.
        structures: ``structures.parquet``.
        shortlist: ``shortlist.parquet``.
        refined: ``refined.parquet`` when ``screener refine`` ran, else None.
    """

    path: Path
    info: dict[str, Any]
    hops: pd.DataFrame
    structures: pd.DataFrame
    shortlist: pd.DataFrame
    refined: pd.DataFrame | None = None

    @property
    def source(self) -> str:
        """Name of the source the run screened (``bundled``, ``mp``, ``files``...)."""
        return str(self.info.get("source") or "")


def load_run(run_dir: str | Path) -> RunData:
    """Read the tables and ``run.json`` of a run directory.

    Raises:
        RunDirError: when the directory or one of its tables is missing or unreadable.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run directory")
    try:
        info = json.loads((path / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: no readable run.json ({exc}); is this a `screener run` output?") from exc
    tables: dict[str, pd.DataFrame] = {}
    for name in ("hops", "structures", "shortlist"):
        try:
            tables[name] = pd.read_parquet(path / f"{name}.parquet")
        except Exception as exc:  # noqa: BLE001 - missing file, truncated Parquet...
            raise RunDirError(f"{path}: cannot read {name}.parquet ({type(exc).__name__}: {exc})") from exc
    refined = None
    if (path / REFINED_TABLE).is_file():
        try:
            refined = pd.read_parquet(path / REFINED_TABLE)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: ignoring unreadable %s (%s)", path, REFINED_TABLE, exc)
    return RunData(path=path, info=info, refined=refined, **tables)


def pathway_config_of(info: dict[str, Any]) -> PathwayConfig:
    """The :class:`PathwayConfig` a run used, from its ``run.json`` (unknown keys are ignored)."""
    from dataclasses import fields

    from screener._pathways import PathwayConfig

    raw = dict((info.get("config") or {}).get("pathways") or {})
    known = {f.name for f in fields(PathwayConfig)}
    extra = sorted(set(raw) - known)
    if extra:
        log.warning("run.json pathway settings not known to this version, ignored: %s", extra)
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in known}
    return PathwayConfig(**kwargs)


def select_hops(run: RunData, top: int) -> pd.DataFrame:
    """The hops to hand off: every hop in ``path_hop_ids`` of the top ``top`` shortlist rows.

    Returns:
        One row per hop (``hops.parquet`` columns plus ``rank`` and ``percolation_1d_eV``),
        ordered by rank, then predicted barrier, then hop id.
    """
    if top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
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


# ----------------------------------------------------------------------------- regenerating bands
def source_spec_of(run: RunData, override: str | None = None) -> str:
    """What to pass to :func:`screener._sources.make_source` to reopen the run's source.

    ``override`` (the ``--source`` option) wins; else a recorded path (``source_path`` /
    ``source_spec`` in ``run.json``, written by newer versions) or the source name when it
    needs no path (``bundled``, ``mp``).

    Raises:
        RunDirError: the run read structure files and ``run.json`` does not record where.
    """
    if override:
        return str(override)
    for key in ("source_path", "source_spec"):
        for where in (run.info, run.info.get("config") or {}):
            if where.get(key):
                return str(where[key])
    if run.source in ("bundled", "mp"):
        return run.source
    raise RunDirError(
        f"run.json records the source {run.source!r} but not its folder: pass --source FOLDER "
        "(the folder or file given to `screener run --source`)"
    )


def fetch_structures(spec: str, items: list[tuple[str, str]]) -> dict[tuple[str, str], Structure | Exception]:
    """The structures of ``(material_id, working_ion)`` pairs from a source, or why not.

    Structure files are read directly (``material_id`` is the path relative to the source
    folder); other sources are asked for the ion's hosts once per ion.
    """
    from screener._pathways import read_structure
    from screener._sources import PathSource, make_source

    src = make_source(spec)
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
    from screener._pathways import find_pathways
    from screener._screen import structure_hash

    try:
        pw = find_pathways(structure, ion, config)
    except Exception as exc:  # noqa: BLE001 - one host's failure is rows, not a crash
        return {h: exc for h in hop_ids}
    if expected_hash and structure_hash(pw.structure) != expected_hash:
        err = RunDirError(f"structure hash {structure_hash(pw.structure)} differs from the run's "
                          f"{expected_hash}: the source changed since the run")
        return {h: err for h in hop_ids}
    out: dict[str, Band | Exception] = {}
    for hid in hop_ids:
        try:
            out[hid] = pw.band(pw.hop(hid))
        except KeyError:
            out[hid] = RunDirError(f"hop {hid} not found again (different pathway settings?)")
        except Exception as exc:  # noqa: BLE001
            out[hid] = exc
    return out


def regenerate_bands(run: RunData, selected: pd.DataFrame,
                     source: str | None = None) -> dict[tuple[str, str, str], Band | Exception]:
    """Bands of the selected hops, keyed by ``(material_id, working_ion, hop_id)``."""
    spec = source_spec_of(run, source)
    config = pathway_config_of(run.info)
    pairs = list(dict.fromkeys(zip(selected["material_id"], selected["working_ion"])))
    structures = fetch_structures(spec, pairs)
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


# ----------------------------------------------------------------------------- names
def safe_name(material_id: str, max_len: int = 60) -> str:
    """A folder-safe, unique name for a material id (ids can be paths like ``sub/LiFePO4.cif``).

    See :func:`screener._io.safe_filename`: unsafe characters become ``_`` and, when anything
    changed, a short hash of the id keeps distinct ids apart (``sub/a.cif`` vs ``sub_a.cif``).
    """
    from screener._io import safe_filename

    return safe_filename(str(material_id), max_len=max_len)


def hop_folder_name(material_id: str, hop_id: str, working_ion: str | None = None) -> str:
    """``<safe material>__<hop_id>`` (with ``_<ion>`` after the material in multi-ion runs)."""
    ion = f"_{working_ion}" if working_ion else ""
    return f"{safe_name(material_id)}{ion}__{hop_id}"


# ----------------------------------------------------------------------------- images
def structure_to_atoms(structure: Structure) -> Atoms:
    """A pymatgen structure as periodic ASE atoms, site order kept."""
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.pbc = True
    return atoms


def linear_images(initial: Atoms, final: Atoms, n_intermediate: int) -> list[Atoms]:
    """``n_intermediate + 2`` images linearly interpolated between two end points (minimum image)."""
    from ase.mep.neb import NEB

    if len(initial) != len(final):
        raise ScreenerError(f"end points differ in size: {len(initial)} vs {len(final)} atoms")
    images = [initial.copy()] + [initial.copy() for _ in range(n_intermediate)] + [final.copy()]
    NEB(images, method="improvedtangent").interpolate(mic=True)
    return images


def idpp_refine(images: list[Atoms], steps: int = 100, fmax: float = 0.1) -> list[Atoms]:
    """Images relaxed on the IDPP surface (ASE; end points fixed); a new list is returned."""
    from ase.mep.neb import NEB, idpp_interpolate

    images = [im.copy() for im in images]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idpp_interpolate(NEB(images, method="improvedtangent"), traj=None, log=None, fmax=fmax, mic=True, steps=steps)
    for im in images:
        im.calc = None
    return images


def neb_images(band: Band, n_intermediate: int = DEFAULT_N_INTERMEDIATE, method: str = "idpp",
               idpp_steps: int = 100) -> list[Atoms]:
    """NEB images of a band's hop: its two end points and IDPP (or linear) images between.

    Args:
        band: the hop's band (host plus the ion's images).
        n_intermediate: images between the end points.
        method: ``idpp`` or ``linear``.
        idpp_steps: optimiser steps on the IDPP surface.

    Returns:
        ``n_intermediate + 2`` ASE atoms, the migrating ion first, host atoms after.
    """
    if n_intermediate < 1:
        raise ValueError(f"need at least one intermediate image, got {n_intermediate}")
    if method not in ("idpp", "linear"):
        raise ValueError(f"method must be idpp or linear, got {method!r}")
    images = linear_images(structure_to_atoms(band.endpoint(0)), structure_to_atoms(band.endpoint(-1)),
                           n_intermediate)
    return idpp_refine(images, steps=idpp_steps) if method == "idpp" else images


def closest_contact(images: list[Atoms], cutoff: float = 3.0) -> tuple[float, int, int, int]:
    """The smallest interatomic distance over all images (periodic images included).

    Returns:
        ``(distance_A, image, i, j)``; the distance is ``inf`` when no two atoms are within
        ``cutoff``.
    """
    from ase.neighborlist import neighbor_list

    best = (math.inf, -1, -1, -1)
    for k, atoms in enumerate(images):
        i, j, d = neighbor_list("ijd", atoms, cutoff)
        if len(d):
            m = int(np.argmin(d))
            if d[m] < best[0]:
                best = (float(d[m]), k, int(i[m]), int(j[m]))
    return best


def species_grouped(images: list[Atoms]) -> list[Atoms]:
    """Images with atoms grouped by element (first atom kept first), one order for all images.

    VASP reads one count per element block, so same-element atoms must be contiguous.
    """
    symbols = images[0].get_chemical_symbols()
    first = {}
    for s in symbols:
        first.setdefault(s, len(first))
    order = [0] + sorted(range(1, len(symbols)), key=lambda a: (first[symbols[a]] if symbols[a] != symbols[0]
                                                                 else -1, a))
    return [im[order] for im in images]


# ----------------------------------------------------------------------------- writers
def write_vasp_neb(images: list[Atoms], folder: Path) -> None:
    """VASP's NEB layout: ``folder/00/POSCAR`` ... ``folder/NN/POSCAR`` (NN = images - 1).

    Atoms are grouped by element (:func:`species_grouped`) in the same order in every image;
    set ``IMAGES = NN - 1`` in the INCAR.
    """
    from ase.io import write

    folder.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(images) - 1)))
    for k, atoms in enumerate(species_grouped(images)):
        d = folder / f"{k:0{width}d}"
        d.mkdir(exist_ok=True)
        write(d / "POSCAR", atoms, format="vasp", direct=True, sort=False)


def clear_hop_folder(folder: Path) -> None:
    """Remove what an earlier export wrote into a hop folder (image folders, ``neb.traj``, ``hop.json``).

    A re-export with fewer images, or one that refuses the hop, must not leave stale images.
    Nothing else in the folder is touched.
    """
    import shutil

    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.is_dir() and p.name.isdigit():
            shutil.rmtree(p)
        elif p.is_file() and p.name in ("neb.traj", "hop.json"):
            p.unlink()


def write_ase_neb(images: list[Atoms], folder: Path) -> None:
    """All images, end points included, in one ASE trajectory ``folder/neb.traj``."""
    from ase.io import write

    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "neb.traj", images, format="traj")


def read_refined_images(run: RunData, material_id: str, working_ion: str, hop_id: str,
                        potential: str | None = None) -> tuple[list[Atoms], pd.Series] | None:
    """The relaxed CI-NEB images ``screener refine`` stored for a hop, with its row.

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
        rows = rows[rows["potential"] == potential]
    if not len(rows):
        return None
    row = rows.sort_values("finished_at", kind="mergesort").iloc[-1]
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
    """

    top: int = 5
    fmt: str = "vasp"
    n_intermediate: int = DEFAULT_N_INTERMEDIATE
    min_distance: float = DEFAULT_MIN_DISTANCE
    idpp_steps: int = 100
    use_refined: bool = True
    refined_potential: str | None = None
    source: str | None = None


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
    run = load_run(run_dir)
    out = Path(out)
    selected = select_hops(run, opt.top)
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
    bands = regenerate_bands(run, need_bands, opt.source) if len(need_bands) else {}
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
                rec.update(images_from=f"refined:{ref_row['potential']}", neb_em_eV=float(ref_row["neb_em_eV"]),
                           refined_converged=bool(ref_row["converged"]))
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
                    write_vasp_neb(images, out / folder)
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
