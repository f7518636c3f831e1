"""Screening: hosts -> distinct hops -> bands -> predicted barriers -> ranked tables.

The science lives in pure functions (:func:`host_pathways`, :func:`predict_batch`,
:func:`assemble_tables`); :func:`screen` runs them on Dask (a local cluster, an existing
scheduler, or synchronously in this process) and writes the tables.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from screener._errors import ScreenerError
from screener._pathways import PathwayConfig

log = logging.getLogger(__name__)

HOP_COLUMNS = [
    "material_id", "formula", "working_ion", "limit", "hop_id", "length_A", "multiplicity",
    "predicted_em_eV", "uncertainty_eV", "model_version", "source", "structure_hash",
    "hop_label", "band_sites", "isite_wyckoff", "esite_wyckoff",
]
STRUCTURE_COLUMNS = [
    "material_id", "formula", "working_ion", "source", "structure_hash", "spacegroup",
    "n_hops", "n_hops_predicted", "lowest_hop_em_eV",
    "percolation_1d_eV", "percolation_2d_eV", "percolation_3d_eV",
    "percolation_1d_vacancy_eV", "percolation_1d_dilute_eV", "passes", "model_version",
]
FAILURE_COLUMNS = ["item", "working_ion", "stage", "error_type", "message"]


@dataclass(frozen=True)
class ScreenConfig:
    """Settings of a screening run.

    Attributes:
        chemistry: working ions to screen.
        threshold: a material passes when its 1D percolation barrier is below this (eV).
        batch_size: hops per model task (one forward pass per batch).
        model_dir: model directory (None: the shipped model).
        device: ``auto``, ``cpu`` or ``cuda``.
        pathways: hop finding and band building settings.
    """

    chemistry: tuple[str, ...] = ("Mg",)
    threshold: float = 0.65
    batch_size: int = 32
    model_dir: str | None = None
    device: str = "auto"
    pathways: PathwayConfig = field(default_factory=PathwayConfig)


# ----------------------------------------------------------------------------- pure functions
def structure_hash(structure) -> str:
    """Content hash of a structure: lattice, species and coordinates (order-independent)."""
    rows = sorted(
        f"{site.species_string}:{','.join(f'{x % 1.0:.4f}' for x in site.frac_coords)}"
        for site in structure
    )
    lat = ",".join(f"{x:.4f}" for x in structure.lattice.matrix.ravel())
    return hashlib.sha256((lat + "|" + ";".join(rows)).encode()).hexdigest()[:16]


def _failure(item: str, ion: str, exc: BaseException, stage: str | None = None) -> dict[str, str]:
    return {
        "item": item,
        "working_ion": ion,
        "stage": stage or getattr(exc, "stage", "screener"),
        "error_type": type(exc).__name__,
        "message": str(exc),
    }


def host_pathways(item: str, structure, ion: str, source: str, config: PathwayConfig) -> dict[str, Any]:
    """Hops and bands of one host, never raising.

    Returns:
        ``hops``: one record per hop x limit; ``bands``: ``{hop_id: Band}`` for the hops whose
        band could be built; ``edges``: the periodic hop network; ``failures``: failure rows;
        ``structure``: structure-level fields; ``seconds``.
    """
    from screener._pathways import find_pathways

    t0 = time.perf_counter()
    out: dict[str, Any] = {"item": item, "ion": ion, "hops": [], "bands": {}, "edges": [],
                           "failures": [], "structure": None}
    try:
        pw = find_pathways(structure, ion, config)
    except ScreenerError as exc:
        out["failures"].append(_failure(item, ion, exc))
        out["seconds"] = time.perf_counter() - t0
        return out
    except Exception as exc:  # noqa: BLE001 - any failure of one host is a row, not a crash
        out["failures"].append(_failure(item, ion, exc, stage="pathways"))
        out["seconds"] = time.perf_counter() - t0
        return out
    shash = structure_hash(pw.structure)
    out["structure"] = {"material_id": item, "formula": pw.formula, "working_ion": ion,
                        "source": source, "structure_hash": shash,
                        "spacegroup": f"{pw.spacegroup[0]} ({pw.spacegroup[1]})"}
    out["edges"] = pw.edges
    out["hops_by_label"] = {}
    for hop in pw.hops:
        rec = {"material_id": item, "formula": pw.formula, "working_ion": ion, "limit": hop.limit,
               "hop_id": hop.hop_id, "length_A": hop.length_A, "multiplicity": hop.multiplicity,
               "source": source, "structure_hash": shash, "hop_label": hop.hop_label,
               "isite_wyckoff": hop.isite_wyckoff, "esite_wyckoff": hop.esite_wyckoff,
               "band_sites": -1}
        try:
            band = pw.band(hop)
            rec["band_sites"] = band.num_sites
            out["bands"][hop.hop_id] = band
        except ScreenerError as exc:
            out["failures"].append(_failure(f"{item}#{hop.hop_id}", ion, exc))
        except Exception as exc:  # noqa: BLE001
            out["failures"].append(_failure(f"{item}#{hop.hop_id}", ion, exc, stage="band"))
        out["hops"].append(rec)
    out["seconds"] = time.perf_counter() - t0
    return out


_PREDICTORS: dict[tuple[str, str], Any] = {}


def get_predictor(model_dir: str | None, device: str = "cpu"):
    """The predictor of ``model_dir``, loaded once per process (i.e. once per Dask worker)."""
    from screener._predictor import BandPredictor

    key = (str(model_dir), device)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = BandPredictor.load(model_dir, device=device)
    return _PREDICTORS[key]


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def predict_batch(keys: list[tuple[str, str, str]], bands: list, model_dir: str | None,
                  device: str = "cpu", batch_size: int = 32) -> dict[str, Any]:
    """Predict one batch of bands: ``keys`` are (item, ion, hop_id) of each band.

    Returns:
        ``rows`` ``{key: (em, uncertainty)}``, ``failures``, ``seconds`` per stage, model version.
    """
    t0 = time.perf_counter()
    device = resolve_device(device)
    predictor = get_predictor(model_dir, device)
    t1 = time.perf_counter()
    from screener._graphs import GraphCache

    cache = GraphCache(predictor.graph_config)
    rows: dict[tuple[str, str, str], tuple[float, float]] = {}
    failures = []
    good_keys, good_bands = [], []
    for k, b in zip(keys, bands):
        try:
            cache.get(b)
            good_keys.append(k)
            good_bands.append(b)
        except Exception as exc:  # noqa: BLE001 - one bad band must not sink the batch
            failures.append(_failure(f"{k[0]}#{k[2]}", k[1], exc, stage="graph"))
    t2 = time.perf_counter()
    if good_bands:
        pred = predictor.predict(good_bands, batch_size=batch_size, cache=cache)
        for i, k in enumerate(good_keys):
            rows[k] = (float(pred.em[i]), float(pred.uncertainty[i]))
    t3 = time.perf_counter()
    return {"rows": rows, "failures": failures, "model_version": predictor.version,
            "seconds": {"model_load": t1 - t0, "graphs": t2 - t1, "model": t3 - t2}}


def _finite_or_inf(x: float) -> float:
    return float(x) if x is not None and not math.isnan(x) else math.inf


def assemble_tables(host_results: list[dict[str, Any]], predictions: dict, model_version: str,
                    threshold: float) -> dict[str, pd.DataFrame]:
    """Hop, structure, shortlist and failure tables from per-host results and predictions."""
    from screener._percolation import percolation_barriers

    hop_rows, struct_rows, fail_rows = [], [], []
    for res in host_results:
        fail_rows.extend(res["failures"])
        for f in res.get("extra_failures", []):
            fail_rows.append(f)
        if res["structure"] is None:
            continue
        ion = res["ion"]
        em_by_id = {}
        for rec in res["hops"]:
            em, unc = predictions.get((res["item"], ion, rec["hop_id"]), (math.nan, math.nan))
            hop_rows.append({**rec, "predicted_em_eV": em, "uncertainty_eV": unc,
                             "model_version": model_version})
            em_by_id[rec["hop_id"]] = em
        perc: dict[str, dict[str, float]] = {}
        conservative: dict[int, float] = {}
        for limit in dict.fromkeys(r["limit"] for r in res["hops"]):
            by_label = {r["hop_label"]: em_by_id[r["hop_id"]] for r in res["hops"] if r["limit"] == limit}
            perc[limit] = percolation_barriers(res["edges"], by_label)
            for lab, em in by_label.items():
                # A hop is open only when it is open in every limit (charged and discharged).
                prev = conservative.get(lab, -math.inf)
                conservative[lab] = max(prev, em) if not math.isnan(em) else math.nan
        p = percolation_barriers(res["edges"], conservative)
        ems = [e for e in em_by_id.values() if not math.isnan(e)]
        struct_rows.append({
            **res["structure"],
            "n_hops": len({r["hop_label"] for r in res["hops"]}),
            "n_hops_predicted": len(ems),
            "lowest_hop_em_eV": min(ems) if ems else math.nan,
            "percolation_1d_eV": p["1D"], "percolation_2d_eV": p["2D"], "percolation_3d_eV": p["3D"],
            "percolation_1d_vacancy_eV": perc.get("vacancy", {}).get("1D", math.inf),
            "percolation_1d_dilute_eV": perc.get("dilute", {}).get("1D", math.inf),
            "passes": bool(p["1D"] < threshold),
            "model_version": model_version,
        })
    hops = pd.DataFrame(hop_rows, columns=HOP_COLUMNS)
    hops = hops.sort_values(["predicted_em_eV", "material_id", "hop_id", "limit"],
                            na_position="last", kind="mergesort").reset_index(drop=True)
    structures = pd.DataFrame(struct_rows, columns=STRUCTURE_COLUMNS)
    structures = structures.sort_values(["percolation_1d_eV", "lowest_hop_em_eV", "material_id", "working_ion"],
                                        kind="mergesort").reset_index(drop=True)
    short = structures[structures["passes"]].copy()
    short.insert(0, "rank", np.arange(1, len(short) + 1))
    paths, worst_unc = [], []
    for _, row in short.iterrows():
        h = hops[(hops["material_id"] == row["material_id"]) & (hops["working_ion"] == row["working_ion"])]
        # The hops that make the 1D path: every hop label open at the percolation barrier (all limits).
        worst = h.groupby("hop_label")["predicted_em_eV"].max()
        labels = set(worst[worst <= row["percolation_1d_eV"] + 1e-12].index)
        sel = h[h["hop_label"].isin(labels)]
        paths.append(sorted(sel["hop_id"].unique().tolist()))
        worst_unc.append(float(sel["uncertainty_eV"].max()) if len(sel) else math.nan)
    short["path_hop_ids"] = paths
    short["path_max_uncertainty_eV"] = worst_unc
    short = short.reset_index(drop=True)
    failures = pd.DataFrame(fail_rows, columns=FAILURE_COLUMNS)
    return {"hops": hops, "structures": structures, "shortlist": short, "failures": failures}


# ----------------------------------------------------------------------------- orchestration
@dataclass
class ScreenResult:
    """Tables of a screening run, its metadata, and the exit code it implies."""

    tables: dict[str, pd.DataFrame]
    run_info: dict[str, Any]
    out: Path | None = None

    @property
    def hops(self) -> pd.DataFrame:
        """One row per hop and limit, ranked by predicted barrier."""
        return self.tables["hops"]

    @property
    def structures(self) -> pd.DataFrame:
        """One row per material and working ion, ranked by 1D percolation barrier."""
        return self.tables["structures"]

    @property
    def shortlist(self) -> pd.DataFrame:
        """Materials whose 1D percolation barrier is below the threshold, ranked."""
        return self.tables["shortlist"]

    @property
    def failures(self) -> pd.DataFrame:
        """One row per input (or hop) that failed."""
        return self.tables["failures"]

    @property
    def exit_code(self) -> int:
        """0 when every input was screened, 3 when some failed."""
        return 3 if len(self.failures) else 0


def model_version_of(model_dir: str | None) -> str:
    """``name@version`` of a model directory, read from its ``model.json``."""
    import json

    from screener._predictor import default_model_dir

    d = Path(model_dir) if model_dir else default_model_dir()
    try:
        meta = json.loads((d / "model.json").read_text())
    except (OSError, ValueError) as exc:
        from screener._errors import ModelLoadError

        raise ModelLoadError(f"no readable model.json in {d}: {exc}") from exc
    return f"{meta.get('name', 'unnamed')}@{meta.get('version', '0')}"


def _progress(quiet: bool):
    if quiet:
        return contextlib_null()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=False)


class contextlib_null:  # noqa: N801 - a tiny null context that is also a "no progress" marker
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def screen(
    chemistry: str | list[str] = "Mg",
    source: Any = None,
    out: str | Path | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    synchronous: bool = False,
    batch_size: int = 32,
    threshold: float = 0.65,
    model_dir: str | None = None,
    device: str = "auto",
    pathways: PathwayConfig | None = None,
    quiet: bool = True,
    write: bool = True,
) -> ScreenResult:
    """Screen hosts for fast migration of one or more working ions.

    Args:
        chemistry: working ion(s), e.g. ``"Mg"``, ``"Mg,Ca"`` or ``["Mg", "Ca"]``.
        source: ``"bundled"``, ``"mp"``, a path, a Source object, or None for the default.
        out: folder for the tables (default ``runs/<chemistry>-<UTC date>``); ignored when
            ``write`` is False.
        workers: worker processes of a local Dask cluster (default: the CPU cores).
        scheduler: address of an existing Dask scheduler to use instead.
        synchronous: run in this process without Dask workers.
        batch_size: hops per model task.
        threshold: a material passes when its 1D percolation barrier is below this (eV).
        model_dir: model directory (default: the shipped model).
        device: ``auto``, ``cpu`` or ``cuda``.
        pathways: hop finding settings.
        quiet: no progress bars.
        write: write the tables and ``run.json``.

    Returns:
        The tables (hops, structures, shortlist, failures) and the run metadata.
    """
    from pipelines.dask_run import dask_client, map_tasks
    from screener import __version__
    from screener._sources import make_source

    ions = [c.strip() for c in (chemistry.split(",") if isinstance(chemistry, str) else chemistry) if c.strip()]
    if not ions:
        raise ValueError("no working ion given")
    pw_config = pathways or PathwayConfig()
    src = make_source(source) if source is None or isinstance(source, (str, Path)) else source
    model_version = model_version_of(model_dir)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    host_args, early_failures = [], []
    for ion in ions:
        for h in src.fetch(ion):
            if h.structure is None:
                early_failures.append(_failure(h.item, ion, h.error or ScreenerError("unreadable"), "read"))
            else:
                host_args.append((h.item, h.structure, ion, src.name, pw_config))
    timings["source"] = time.perf_counter() - t0
    device_used = resolve_device(device)
    with dask_client(workers, scheduler, device_used, synchronous=synchronous) as client, _progress(quiet) as progress:
        t1 = time.perf_counter()
        host_results = map_tasks(client, host_pathways, host_args, "hosts", progress)
        for args, res in zip(host_args, host_results):
            if isinstance(res, BaseException):
                i = host_args.index(args)
                host_results[i] = {"item": args[0], "ion": args[2], "hops": [], "bands": {}, "edges": [],
                                   "failures": [_failure(args[0], args[2], res, "pathways")],
                                   "structure": None, "seconds": 0.0}
        timings["pathways"] = time.perf_counter() - t1
        keys, bands = [], []
        for res in host_results:
            for hop_id, band in res["bands"].items():
                keys.append((res["item"], res["ion"], hop_id))
                bands.append(band)
            res["bands"] = {}
        batches = [(keys[i : i + batch_size], bands[i : i + batch_size], model_dir, device_used, batch_size)
                   for i in range(0, len(keys), batch_size)]
        t2 = time.perf_counter()
        resources = {"GPU": 1} if device_used == "cuda" and client is not None and scheduler is None else None
        batch_results = map_tasks(client, predict_batch, batches, "hops (batches)", progress, resources)
        timings["predict_wall"] = time.perf_counter() - t2
    predictions: dict = {}
    task_seconds = {"graphs": 0.0, "model": 0.0, "model_load": 0.0}
    extra_failures = []
    for batch, res in zip(batches, batch_results):
        if isinstance(res, BaseException):
            for k in batch[0]:
                extra_failures.append(_failure(f"{k[0]}#{k[2]}", k[1], res, "model"))
            continue
        predictions.update(res["rows"])
        extra_failures.extend(res["failures"])
        for k, v in res["seconds"].items():
            task_seconds[k] += v
    t3 = time.perf_counter()
    tables = assemble_tables(host_results, predictions, model_version, threshold)
    if extra_failures:
        tables["failures"] = pd.concat([tables["failures"], pd.DataFrame(extra_failures, columns=FAILURE_COLUMNS)],
                                       ignore_index=True)
    if early_failures:
        tables["failures"] = pd.concat([pd.DataFrame(early_failures, columns=FAILURE_COLUMNS), tables["failures"]],
                                       ignore_index=True)
    timings["assemble"] = time.perf_counter() - t3
    timings["task_pathways_seconds"] = float(sum(r.get("seconds", 0.0) for r in host_results))
    timings.update({f"task_{k}_seconds": v for k, v in task_seconds.items()})
    run_info = {
        "screener_version": __version__,
        "model_version": model_version,
        "source": src.name,
        "source_database_version": src.database_version(),
        "chemistry": ions,
        "config": {"threshold": threshold, "batch_size": batch_size, "workers": workers,
                   "scheduler": bool(scheduler), "synchronous": synchronous, "device": device_used,
                   "pathways": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(pw_config).items()}},
        "counts": {"hosts": len(host_args) + len(early_failures), "hops": len(tables["hops"]),
                   "hops_predicted": int(tables["hops"]["predicted_em_eV"].notna().sum()),
                   "structures": len(tables["structures"]), "shortlist": len(tables["shortlist"]),
                   "failures": len(tables["failures"])},
        "timings_s": timings,
    }
    result = ScreenResult(tables, run_info)
    if write:
        from screener._io import default_out_dir, write_run

        out_dir = Path(out) if out else default_out_dir(ions)
        tw = time.perf_counter()
        write_run(out_dir, tables, run_info)
        run_info["timings_s"]["writing"] = time.perf_counter() - tw
        write_run(out_dir, {}, run_info)  # run.json again, with the writing time
        result.out = out_dir
    return result
