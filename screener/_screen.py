"""Screening: hosts -> distinct hops -> bands -> predicted barriers -> ranked tables.

The science lives in pure functions (:func:`host_pathways`, :func:`predict_batch`,
:func:`assemble_tables`); :func:`screen` runs them on Dask (a local cluster, an existing
scheduler, or synchronously in this process), keeps every finished piece of work in the run's
part store and assembles the tables from it.

Exactly-once resume. Every host task (one structure, one working ion) has a key derived from its
content (item, ion, source, the structure itself, hop-finding settings, screener version), and
every model batch a key derived from the sorted ``(material, ion, hop_id)`` keys it holds, the
model (version and checksum of ``model.json``) and the settings. Batches are cut from the hops of
the hosts in a fixed order (working ion, then item), so the same inputs always give the same
batches. A host task returns the cleaned cell and the hop definitions (JSON), and a batch task
rebuilds its bands from them on the worker, so a resumed run never needs to redo a host's
symmetry analysis to predict its remaining hops. Only the client writes parts, each atomically
and recorded in the manifest after it is in place; a task run twice (a lost worker) therefore
changes nothing. See :mod:`screener._io` for the part store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from screener._errors import ModelLoadError, ScreenerError
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
#: Columns of a batch part: one row per hop, a prediction or a failure.
BATCH_COLUMNS = ["material_id", "working_ion", "hop_id", "predicted_em_eV", "uncertainty_eV",
                 "stage", "error_type", "message"]

#: Bump when host or batch parts change meaning: older parts are then recomputed.
KEY_FORMAT = 1

#: On a CPU, graphs per forward pass are capped so that a pass holds about this many atoms: the
#: message passing is memory-bound and larger passes fall out of cache (measured ~1.8x slower
#: per band at 32 bands of ~150 sites than one at a time).
CPU_FORWARD_SITES = 384


@dataclass(frozen=True)
class BandSpec:
    """How a worker rebuilds one hop's band: the host's cleaned cell and the hop (JSON-ready).

    Specs of one host share one ``cell`` mapping, so a batch carries each cell once.

    Attributes:
        cell: ``lattice``, ``species``, ``frac_coords`` and ``ion_sites`` of the cleaned cell.
        ion: the working ion.
        hop: :meth:`Hop.to_dict` of the hop.
        config: the settings the hop was found with.
    """

    cell: dict[str, Any]
    ion: str
    hop: dict[str, Any]
    config: PathwayConfig


# ----------------------------------------------------------------------------- keys
def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def structure_hash(structure) -> str:
    """Content hash of a structure: lattice, species and coordinates (order-independent)."""
    rows = sorted(
        f"{site.species_string}:{','.join(f'{x % 1.0:.4f}' for x in site.frac_coords)}"
        for site in structure
    )
    lat = ",".join(f"{x:.4f}" for x in structure.lattice.matrix.ravel())
    return hashlib.sha256((lat + "|" + ";".join(rows)).encode()).hexdigest()[:16]


def pathway_settings(config: PathwayConfig) -> dict[str, Any]:
    """The hop-finding settings as a JSON-ready mapping."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def input_fingerprint(structure) -> str:
    """Exact content hash of an input structure (full precision, site order included)."""
    h = hashlib.sha256()
    h.update(repr(structure.lattice.matrix.tolist()).encode())
    h.update("|".join(site.species_string for site in structure).encode())
    h.update(repr(np.asarray(structure.frac_coords).tolist()).encode())
    return h.hexdigest()


def host_key(item: str, ion: str, source: str, structure, config: PathwayConfig) -> str:
    """Key of a host task: what it reads and how; equal keys give equal results."""
    from screener import __version__

    return _sha({"format": KEY_FORMAT, "screener": __version__, "item": item, "ion": ion,
                 "source": source, "structure": input_fingerprint(structure),
                 "pathways": pathway_settings(config)})[:32]


def batch_key(keys: list[tuple[str, str, str]], model_fingerprint: str, settings_hash: str) -> str:
    """Key of a model batch: its sorted (material, ion, hop_id) keys, the model and the settings."""
    return _sha({"format": KEY_FORMAT, "keys": sorted(list(k) for k in keys),
                 "model": model_fingerprint, "settings": settings_hash})[:32]


# ----------------------------------------------------------------------------- pure functions
def _failure(item: str, ion: str, exc: BaseException, stage: str | None = None) -> dict[str, str]:
    return {
        "item": item,
        "working_ion": ion,
        "stage": stage or getattr(exc, "stage", "screener"),
        "error_type": type(exc).__name__,
        "message": _message(exc),
    }


def _message(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return ("the worker processing it died repeatedly (out of memory, or a crash in native "
                "code); the input was not screened. Rerun the same command to retry it")
    return str(exc)


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB).

    On Linux this is ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` is carried over from the
    parent through fork + exec, so a worker spawned by a large process would report the parent's.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kib / 1024.0 if os.uname().sysname != "Darwin" else kib / 2**20
    except (ImportError, AttributeError):  # pragma: no cover - not POSIX
        return math.nan


_MALLOC_TUNED = False
#: glibc settings of a screening process: allocations up to 32 MiB come from the heap (not a fresh
#: mmap each time) and up to 256 MiB of free heap is kept. Dask workers start with
#: MALLOC_TRIM_THRESHOLD_=65536, which turns every message-passing tensor into mmap + page faults:
#: measured 2-3x slower model stage, a third of the CPU time in the kernel.
MALLOC_MMAP_THRESHOLD = 32 << 20
MALLOC_TRIM_THRESHOLD = 256 << 20


def tune_malloc() -> bool:
    """Apply :data:`MALLOC_MMAP_THRESHOLD` and :data:`MALLOC_TRIM_THRESHOLD` to this process, once.

    Only on glibc (Linux); ``SCREENER_MALLOC_TUNING=0`` turns it off. Returns whether it applied.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if os.environ.get("SCREENER_MALLOC_TUNING", "1") == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-3, MALLOC_MMAP_THRESHOLD) == 1  # M_MMAP_THRESHOLD
        ok = libc.mallopt(-1, MALLOC_TRIM_THRESHOLD) == 1 and ok  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = ok
    return ok


def host_pathways(item: str, structure, ion: str, source: str, config: PathwayConfig) -> dict[str, Any]:
    """Hops of one host, never raising (except MemoryError): a JSON-ready mapping.

    Returns:
        ``hops``: one record per hop x limit; ``hop_specs``: ``{hop_id: hop dict}`` for the hops
        whose band fits ``config.max_band_sites``; ``cell``: the cleaned cell their bands are
        built from; ``edges``: the periodic hop network; ``failures``: failure rows;
        ``structure``: structure-level fields (None when the host failed); ``seconds``.
    """
    from screener._errors import BandTooLargeError
    from screener._pathways import find_pathways

    tune_malloc()
    t0 = time.perf_counter()
    out: dict[str, Any] = {"item": item, "ion": ion, "hops": [], "hop_specs": {}, "cell": None,
                           "edges": [], "failures": [], "structure": None}

    def done() -> dict[str, Any]:
        out.update(seconds=time.perf_counter() - t0, pid=os.getpid(), peak_rss_mib=_peak_rss_mib())
        return out

    try:
        pw = find_pathways(structure, ion, config)
    except ScreenerError as exc:
        out["failures"].append(_failure(item, ion, exc))
        return done()
    except MemoryError:
        raise  # not a property of the input: the task fails and a rerun retries it
    except Exception as exc:  # noqa: BLE001 - any failure of one host is a row, not a crash
        out["failures"].append(_failure(item, ion, exc, stage="pathways"))
        return done()
    s = pw.structure
    shash = structure_hash(s)
    out["structure"] = {"material_id": item, "formula": pw.formula, "working_ion": ion,
                        "source": source, "structure_hash": shash,
                        "spacegroup": f"{pw.spacegroup[0]} ({pw.spacegroup[1]})"}
    out["edges"] = [[int(u), int(v), [int(x) for x in j], int(lab)] for u, v, j, lab in pw.edges]
    out["cell"] = {"lattice": s.lattice.matrix.tolist(), "species": [site.specie.symbol for site in s],
                   "frac_coords": s.frac_coords.tolist(), "ion_sites": [int(i) for i in pw.ion_sites]}
    for hop in pw.hops:
        rec = {"material_id": item, "formula": pw.formula, "working_ion": ion, "limit": hop.limit,
               "hop_id": hop.hop_id, "length_A": hop.length_A, "multiplicity": hop.multiplicity,
               "source": source, "structure_hash": shash, "hop_label": hop.hop_label,
               "isite_wyckoff": hop.isite_wyckoff, "esite_wyckoff": hop.esite_wyckoff,
               "band_sites": -1}
        try:
            size = pw.band_size(hop)
            rec["band_sites"] = int(size)
            if size > config.max_band_sites:
                raise BandTooLargeError(
                    f"hop {hop.hop_id} ({hop.limit}, {hop.length_A:.3f} Å) in {pw.formula}: its band "
                    f"would have {size} sites > max_band_sites={config.max_band_sites}; raise "
                    "--max-band-sites or lower min_width"
                )
            out["hop_specs"][hop.hop_id] = hop.to_dict()
        except ScreenerError as exc:
            out["failures"].append(_failure(f"{item}#{hop.hop_id}", ion, exc))
        except Exception as exc:  # noqa: BLE001
            out["failures"].append(_failure(f"{item}#{hop.hop_id}", ion, exc, stage="band"))
        out["hops"].append(rec)
    return done()


def build_spec_band(spec: BandSpec, cache: dict[int, Any] | None = None):
    """The band of a :class:`BandSpec` (the cell is rebuilt once per ``cache``)."""
    from pymatgen.core import Lattice, Structure

    from screener._pathways import Hop, HostPathways, build_band

    cache = {} if cache is None else cache
    pw = cache.get(id(spec.cell))
    if pw is None:
        c = spec.cell
        s = Structure(Lattice(c["lattice"]), c["species"], c["frac_coords"])
        pw = HostPathways(structure=s, ion=spec.ion, hops=[], edges=[], ion_sites=list(c["ion_sites"]),
                          config=spec.config)
        cache[id(spec.cell)] = pw
    d = spec.hop
    hop = Hop(**{**d, "isite_frac": tuple(d["isite_frac"]), "esite_frac": tuple(d["esite_frac"])})
    return build_band(pw, hop, spec.config)


_PREDICTORS: dict[tuple[str, str, str], Any] = {}


def get_predictor(model_dir: str | None, device: str = "cpu"):
    """The predictor of ``model_dir``, loaded once per process (i.e. once per Dask worker).

    In a Dask worker, torch is held to the worker's threads (``OMP_NUM_THREADS``, one by default).
    """
    from screener._predictor import BandPredictor

    try:  # a model replaced on disk is loaded again, never served stale from the cache
        stamp = hashlib.sha256(_model_meta_path(model_dir).read_bytes()).hexdigest()
    except OSError:
        stamp = ""
    key = (str(model_dir), device, stamp)
    if key not in _PREDICTORS:
        try:
            from distributed import get_worker

            get_worker()
            import torch

            from pipelines.dask_run import worker_threads

            torch.set_num_threads(worker_threads())
        except (ImportError, ValueError):
            pass  # not in a Dask worker: leave torch's threads alone
        _PREDICTORS[key] = BandPredictor.load(model_dir, device=device)
    return _PREDICTORS[key]


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


#: Hops per model task when none is given: on a GPU a task is one forward pass, and 32 bands fill
#: it; on a CPU batching buys nothing (the message passing costs per bond, not per call) and
#: small tasks spread a run evenly over the workers (a 124-hop catalogue run is 16 tasks, not 4).
DEFAULT_BATCH_SIZE = {"cuda": 32, "cpu": 8}


def default_batch_size(device: str) -> int:
    """Hops per model task for a resolved ``device`` (see :data:`DEFAULT_BATCH_SIZE`)."""
    return DEFAULT_BATCH_SIZE.get(device, DEFAULT_BATCH_SIZE["cpu"])


def forward_batch_size(bands: list, batch_size: int, device: str) -> int:
    """Bands per forward pass: ``batch_size`` on a GPU; on a CPU about :data:`CPU_FORWARD_SITES` atoms."""
    if device != "cpu" or not bands:
        return max(1, batch_size)
    mean_sites = sum(b.num_sites for b in bands) / len(bands)
    return int(max(1, min(batch_size, CPU_FORWARD_SITES // max(mean_sites, 1))))


def predict_batch(keys: list[tuple[str, str, str]], bands: list, model_dir: str | None,
                  device: str = "cpu", batch_size: int = 32) -> dict[str, Any]:
    """Predict one batch: ``keys`` are (item, ion, hop_id); ``bands`` are Bands or BandSpecs.

    Returns:
        ``rows``: one :data:`BATCH_COLUMNS` mapping per key (a prediction, or a band/graph
        failure); ``seconds`` per stage; the model version; the worker's pid and peak RSS.
    """
    from screener._band import Band
    from screener._graphs import GraphCache

    tune_malloc()
    t0 = time.perf_counter()
    device = resolve_device(device)
    predictor = get_predictor(model_dir, device)
    t1 = time.perf_counter()
    failed: dict[int, tuple[str, BaseException]] = {}
    built: list[Any] = [None] * len(keys)
    cells: dict[int, Any] = {}
    for i, b in enumerate(bands):
        try:
            built[i] = b if isinstance(b, Band) else build_spec_band(b, cells)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad band must not sink the batch
            failed[i] = ("band", exc)
    t2 = time.perf_counter()
    cache = GraphCache(predictor.graph_config)
    for i, b in enumerate(built):
        if b is None:
            continue
        try:
            cache.get(b)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001
            failed[i] = ("graph", exc)
    t3 = time.perf_counter()
    good = [i for i in range(len(keys)) if i not in failed]
    em: dict[int, tuple[float, float]] = {}
    if good:
        good_bands = [built[i] for i in good]
        pred = predictor.predict(good_bands, batch_size=forward_batch_size(good_bands, batch_size, device),
                                 cache=cache)
        em = {i: (float(pred.em[j]), float(pred.uncertainty[j])) for j, i in enumerate(good)}
    t4 = time.perf_counter()
    rows = []
    for i, (item, ion, hop_id) in enumerate(keys):
        row = {"material_id": item, "working_ion": ion, "hop_id": hop_id,
               "predicted_em_eV": math.nan, "uncertainty_eV": math.nan,
               "stage": None, "error_type": None, "message": None}
        if i in failed:
            stage, exc = failed[i]
            row.update(stage=getattr(exc, "stage", stage) if isinstance(exc, ScreenerError) else stage,
                       error_type=type(exc).__name__, message=str(exc))
        else:
            row["predicted_em_eV"], row["uncertainty_eV"] = em[i]
        rows.append(row)
    return {"rows": rows, "model_version": predictor.version, "pid": os.getpid(),
            "peak_rss_mib": _peak_rss_mib(),
            "seconds": {"model_load": t1 - t0, "bands": t2 - t1, "graphs": t3 - t2, "model": t4 - t3}}


def batch_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A batch's rows as a table with :data:`BATCH_COLUMNS` (fixed dtypes)."""
    df = pd.DataFrame(rows, columns=BATCH_COLUMNS)
    for col in ("predicted_em_eV", "uncertainty_eV"):
        df[col] = df[col].astype("float64")
    for col in ("material_id", "working_ion", "hop_id", "stage", "error_type", "message"):
        df[col] = df[col].astype("object")
    return df


def _finite_or_inf(x: float) -> float:
    return float(x) if x is not None and not math.isnan(x) else math.inf


def shortlist_table(structures: pd.DataFrame, hops: pd.DataFrame) -> pd.DataFrame:
    """Ranked shortlist: the ``passes`` rows of ``structures`` with the hops that make the path.

    ``path_hop_ids`` lists every hop whose label is open (in all limits) at the material's 1D
    percolation barrier; ``path_max_uncertainty_eV`` is the largest uncertainty among them.
    An empty shortlist keeps every column.
    """
    short = structures.loc[structures["passes"].astype(bool).to_numpy()].copy()
    short.insert(0, "rank", np.arange(1, len(short) + 1))
    paths, worst_unc = [], []
    for _, row in short.iterrows():
        h = hops[(hops["material_id"] == row["material_id"]) & (hops["working_ion"] == row["working_ion"])]
        worst = h.groupby("hop_label")["predicted_em_eV"].max()
        labels = set(worst[worst <= row["percolation_1d_eV"] + 1e-12].index)
        sel = h[h["hop_label"].isin(labels)]
        paths.append(sorted(sel["hop_id"].unique().tolist()))
        worst_unc.append(float(sel["uncertainty_eV"].max()) if len(sel) else math.nan)
    short["path_hop_ids"] = pd.Series(paths, index=short.index, dtype=object)
    short["path_max_uncertainty_eV"] = pd.Series(worst_unc, index=short.index, dtype=float)
    return short.reset_index(drop=True)


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
    short = shortlist_table(structures, hops)
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


def _model_meta_path(model_dir: str | None) -> Path:
    from screener._predictor import default_model_dir

    return (Path(model_dir) if model_dir else default_model_dir()) / "model.json"


def model_version_of(model_dir: str | None) -> str:
    """``name@version`` of a model directory, read from its ``model.json``."""
    path = _model_meta_path(model_dir)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"no readable model.json in {path.parent}: {exc}") from exc
    return f"{meta.get('name', 'unnamed')}@{meta.get('version', '0')}"


def model_fingerprint(model_dir: str | None) -> str:
    """Version and checksum of ``model.json`` (which holds the sha256 of every model file)."""
    path = _model_meta_path(model_dir)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise ModelLoadError(f"no readable model.json in {path.parent}: {exc}") from exc
    return f"{model_version_of(model_dir)}#{digest}"


def check_model(model_dir: str | None) -> None:
    """Load the model once here, so that a broken or unsafe model stops the run before any work.

    Raises:
        ModelLoadError: the model cannot be loaded (missing or modified files, or weights that are
            not plain tensors: ``weights_only`` refuses pickled objects).
    """
    try:
        get_predictor(model_dir, "cpu")
    except Exception as exc:  # noqa: BLE001 - e.g. pickle.UnpicklingError from weights_only
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelLoadError(
            f"cannot load the model in {_model_meta_path(model_dir).parent}: "
            f"{type(exc).__name__}: {first}"
        ) from exc


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


@dataclass
class _HostInput:
    key: str
    item: str
    ion: str
    source: str
    structure: Any


def _json_roundtrip(obj: Any) -> Any:
    """What a part file gives back: the in-memory and the resumed paths see identical data."""
    return json.loads(json.dumps(obj, allow_nan=True))


def _failed_host(h: _HostInput, exc: BaseException) -> dict[str, Any]:
    return {"item": h.item, "ion": h.ion, "hops": [], "hop_specs": {}, "cell": None, "edges": [],
            "failures": [_failure(h.item, h.ion, exc, "pathways")], "structure": None}


class _Batcher:
    """Cuts batches from the hops of the hosts in a fixed order, as soon as they are known.

    A batch is emitted once every host before its last hop has a result, so a batch's content
    depends only on the inputs, never on the order in which tasks finished.
    """

    def __init__(self, order: list[str], batch_size: int, config: PathwayConfig):
        self.order = order
        self.batch_size = batch_size
        self.config = config
        self.results: dict[str, dict[str, Any]] = {}
        self._next = 0
        self._buffer: list[tuple[tuple[str, str, str], BandSpec]] = []

    def add(self, key: str, result: dict[str, Any]) -> list[list[tuple[tuple[str, str, str], BandSpec]]]:
        """Record a host result; returns the batches it completes."""
        self.results[key] = result
        while self._next < len(self.order) and self.order[self._next] in self.results:
            res = self.results[self.order[self._next]]
            cell = res.get("cell")
            for hop_id, hop in res.get("hop_specs", {}).items():
                self._buffer.append(((res["item"], res["ion"], hop_id),
                                     BandSpec(cell, res["ion"], hop, self.config)))
            self._next += 1
        n_full = len(self._buffer) // self.batch_size * self.batch_size
        out = [self._buffer[i : i + self.batch_size] for i in range(0, n_full, self.batch_size)]
        self._buffer = self._buffer[n_full:]
        if self._next == len(self.order) and self._buffer:
            out.append(self._buffer)
            self._buffer = []
        return out


def screen(
    chemistry: str | list[str] = "Mg",
    source: Any = None,
    out: str | Path | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    synchronous: bool = False,
    batch_size: int | None = None,
    threshold: float = 0.65,
    model_dir: str | None = None,
    device: str = "auto",
    pathways: PathwayConfig | None = None,
    quiet: bool = True,
    write: bool = True,
    resume: bool = True,
) -> ScreenResult:
    """Screen hosts for fast migration of one or more working ions.

    With ``write``, finished work is kept in ``<out>/_parts``: running the same call again after
    an interruption (even ``kill -9``) does only the work left, and the tables are the same as
    an uninterrupted run's, one row per hop. A rerun of a finished run does no screening work.

    Args:
        chemistry: working ion(s), e.g. ``"Mg"``, ``"Mg,Ca"`` or ``["Mg", "Ca"]``.
        source: ``"bundled"``, ``"mp"``, a path, a Source object, or None for the default.
        out: folder for the tables (default ``runs/<chemistry>-<UTC date>``); ignored when
            ``write`` is False.
        workers: worker processes of a local Dask cluster (default: the CPU cores).
        scheduler: address of an existing Dask scheduler to use instead.
        synchronous: run in this process without Dask workers.
        batch_size: hops per model task (default: :func:`default_batch_size` of the device:
            32 on a GPU, 8 on a CPU).
        threshold: a material passes when its 1D percolation barrier is below this (eV).
        model_dir: model directory (default: the shipped model).
        device: ``auto``, ``cpu`` or ``cuda``.
        pathways: hop finding settings.
        quiet: no progress bars.
        write: write the tables, ``run.json`` and the parts.
        resume: reuse the parts of an earlier run into ``out`` (False deletes them first).

    Returns:
        The tables (hops, structures, shortlist, failures) and the run metadata.

    Raises:
        ModelLoadError: the model cannot be loaded.
        ScreenerError: the source cannot be read, or another run is writing to ``out``.
    """
    from screener import __version__
    from screener._sources import make_source

    t_start = time.perf_counter()
    ions = [c.strip() for c in (chemistry.split(",") if isinstance(chemistry, str) else chemistry) if c.strip()]
    if not ions:
        raise ValueError("no working ion given")
    if batch_size is None:
        batch_size = default_batch_size(resolve_device(device))
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    pw_config = pathways or PathwayConfig()
    model_version = model_version_of(model_dir)
    model_fp = model_fingerprint(model_dir)
    check_model(model_dir)
    src = make_source(source) if source is None or isinstance(source, (str, Path)) else source
    settings_hash = _sha({"pathways": pathway_settings(pw_config)})[:16]
    timings: dict[str, float] = {k: 0.0 for k in ("source", "pathways", "bands", "graphs", "model",
                                                  "model_load", "writing")}

    # ------------------------------------------------------------------ inputs
    t0 = time.perf_counter()
    hosts: dict[str, _HostInput] = {}
    early_failures = []
    n_inputs = 0
    for ion in ions:
        for h in src.fetch(ion):
            n_inputs += 1
            if h.structure is None:
                early_failures.append(_failure(h.item, ion, h.error or ScreenerError("unreadable"), "read"))
                continue
            key = host_key(h.item, ion, src.name, h.structure, pw_config)
            if key in hosts:
                log.warning("%s (%s) is listed twice with the same structure: screened once", h.item, ion)
                continue
            hosts[key] = _HostInput(key, h.item, ion, src.name, h.structure)
    timings["source"] = time.perf_counter() - t0
    order = sorted(hosts, key=lambda k: (ions.index(hosts[k].ion), hosts[k].item, k))

    # ------------------------------------------------------------------ part store
    store = None
    out_dir = None
    if write:
        from screener._io import PARTS_DIR, PartStore, default_out_dir

        out_dir = Path(out) if out else default_out_dir(ions)
        if not resume and (out_dir / PARTS_DIR).exists():
            import shutil

            shutil.rmtree(out_dir / PARTS_DIR)
        store = PartStore(out_dir, header={"screener": __version__, "model": model_fp,
                                           "settings": settings_hash, "chemistry": ions})
    try:
        tables, info = _run_pipeline(
            hosts, order, store, workers=workers, scheduler=scheduler,
            synchronous=synchronous, batch_size=batch_size, model_dir=model_dir, device=device,
            pw_config=pw_config, model_fp=model_fp, settings_hash=settings_hash,
            model_version=model_version, threshold=threshold, quiet=quiet, timings=timings,
        )
    finally:
        if store is not None:
            store.close()
    if early_failures:
        tables["failures"] = pd.concat([pd.DataFrame(early_failures, columns=FAILURE_COLUMNS), tables["failures"]],
                                       ignore_index=True)
    run_info = {
        "screener_version": __version__,
        "model_version": model_version,
        "source": src.name,
        # Where a file source read from, so `export`/`refine` can re-read the structures.
        "source_path": str(Path(src.path).resolve()) if hasattr(src, "path") else None,
        "source_database_version": src.database_version(),
        "chemistry": ions,
        "config": {"threshold": threshold, "batch_size": batch_size, "workers": workers,
                   "scheduler": bool(scheduler), "synchronous": synchronous, "device": info["device"],
                   "pathways": pathway_settings(pw_config)},
        "counts": {"hosts": n_inputs, "hops": len(tables["hops"]),
                   "hops_predicted": int(tables["hops"]["predicted_em_eV"].notna().sum()),
                   "structures": len(tables["structures"]), "shortlist": len(tables["shortlist"]),
                   "failures": len(tables["failures"])},
        "resume": info["resume"],
        "workers": info["workers"],
        "timings_s": timings,
    }
    result = ScreenResult(tables, run_info)
    if write and out_dir is not None:
        from screener._io import write_parquet_atomic, write_json_atomic

        tw = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, df in tables.items():
            write_parquet_atomic(df, out_dir / f"{name}.parquet")
        timings["writing"] += time.perf_counter() - tw
        timings["total"] = time.perf_counter() - t_start
        write_json_atomic(run_info, out_dir / "run.json")
        result.out = out_dir
    else:
        timings["total"] = time.perf_counter() - t_start
    return result


def _run_pipeline(hosts: dict[str, _HostInput], order: list[str], store: Any, *, workers: int | None,
                  scheduler: str | None, synchronous: bool, batch_size: int, model_dir: str | None,
                  device: str, pw_config: PathwayConfig, model_fp: str, settings_hash: str, model_version: str, threshold: float,
                  quiet: bool, timings: dict[str, float]) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Run the host and batch tasks still to do, store them, and assemble the tables."""
    from pipelines.dask_run import TaskRunner, dask_client

    batcher = _Batcher(order, batch_size, pw_config)
    batches: list[tuple[str, list[tuple[str, str, str]]]] = []
    batch_keys: dict[str, list[tuple[str, str, str]]] = {}
    in_memory: dict[str, pd.DataFrame] = {}
    errors: dict[str, list[dict[str, str]]] = {}
    counts = {"hosts_total": len(order), "hosts_from_parts": 0, "hosts_run": 0, "hosts_crashed": 0,
              "batches_total": 0, "batches_from_parts": 0, "batches_run": 0, "batches_crashed": 0}
    rss: dict[int, float] = {}
    device_used = resolve_device(device)
    resources = {"GPU": 1} if device_used == "cuda" and scheduler is None and not synchronous else None
    # Dask keys name the content (readable logs) plus this run, so that a scheduler shared by
    # successive runs never hands one run a result another run computed.
    run_token = os.urandom(4).hex()

    with dask_client(workers, scheduler, device_used, synchronous=synchronous) as client, \
            _progress(quiet) as progress:
        t_wall = time.perf_counter()
        runner = TaskRunner(client)
        bar_hosts = progress.add_task("hosts", total=len(order)) if progress is not None else None
        bar_batches = progress.add_task("hop batches", total=0) if progress is not None else None

        def emit(new_batches: list) -> None:
            for batch in new_batches:
                keys = [k for k, _ in batch]
                bkey = batch_key(keys, model_fp, settings_hash)
                batches.append((bkey, keys))
                batch_keys[bkey] = keys
                counts["batches_total"] += 1
                if progress is not None:
                    progress.update(bar_batches, total=counts["batches_total"])
                if store is not None and store.has("batch", bkey):
                    counts["batches_from_parts"] += 1
                    if progress is not None:
                        progress.advance(bar_batches)
                    continue
                specs = [spec for _, spec in batch]
                runner.submit(("batch", bkey), predict_batch, (keys, specs, model_dir, device_used, batch_size),
                              key=f"predict_batch-{bkey[:16]}-{run_token}", resources=resources)

        stored: dict[str, dict[str, Any]] = {}
        for key in order:  # host tasks first: their failures show early, batches follow them
            part = store.host(key) if store is not None else None
            if part is not None:
                stored[key] = part
                continue
            h = hosts[key]
            runner.submit(("host", key), host_pathways, (h.item, h.structure, h.ion, h.source, pw_config),
                          key=f"host_pathways-{key[:16]}-{run_token}")
        for key, part in stored.items():
            counts["hosts_from_parts"] += 1
            if progress is not None:
                progress.advance(bar_hosts)
            emit(batcher.add(key, part))

        for (kind, key), res in runner.results():
            if kind == "host":
                h = hosts[key]
                if isinstance(res, BaseException):
                    log.warning("%s (%s): task failed: %s", h.item, h.ion, _message(res))
                    counts["hosts_crashed"] += 1
                    result = _failed_host(h, res)
                else:
                    counts["hosts_run"] += 1
                    timings["pathways"] += float(res.get("seconds", 0.0))
                    rss[int(res.get("pid", 0))] = max(rss.get(int(res.get("pid", 0)), 0.0),
                                                      float(res.get("peak_rss_mib", 0.0)))
                    result = _json_roundtrip(res)
                    if store is not None:
                        tw = time.perf_counter()
                        store.put_host(key, h.item, result)
                        timings["writing"] += time.perf_counter() - tw
                if progress is not None:
                    progress.advance(bar_hosts)
                emit(batcher.add(key, result))
            else:
                keys = batch_keys[key]
                if isinstance(res, BaseException):
                    counts["batches_crashed"] += 1
                    log.warning("a batch of %d hops failed: %s", len(keys), _message(res))
                    errors[key] = [_failure(f"{m}#{hop}", ion, res, "model") for m, ion, hop in keys]
                else:
                    counts["batches_run"] += 1
                    for stage, sec in res["seconds"].items():
                        timings[stage] = timings.get(stage, 0.0) + float(sec)
                    pid = int(res.get("pid", 0))
                    rss[pid] = max(rss.get(pid, 0.0), float(res.get("peak_rss_mib", 0.0)))
                    df = batch_frame(res["rows"])
                    if store is not None:
                        tw = time.perf_counter()
                        store.put_batch(key, df)
                        timings["writing"] += time.perf_counter() - tw
                    else:
                        in_memory[key] = df
                if progress is not None:
                    progress.advance(bar_batches)
        timings["screening_wall"] = time.perf_counter() - t_wall

    # ------------------------------------------------------------------ assemble from the parts
    t3 = time.perf_counter()
    predictions: dict[tuple[str, str, str], tuple[float, float]] = {}
    extra_failures: list[dict[str, str]] = []
    for bkey, keys in batches:
        if bkey in errors:
            extra_failures.extend(errors[bkey])
            continue
        df = store.batch(bkey) if store is not None else in_memory.get(bkey)
        if df is None:  # a part damaged since it was checked: its hops stay unpredicted
            extra_failures.extend(_failure(f"{m}#{hop}", ion, ScreenerError(
                "the stored prediction of this hop is missing or damaged; rerun to recompute it"), "model")
                for m, ion, hop in keys)
            continue
        for r in df.itertuples(index=False):
            if r.error_type is None or (isinstance(r.error_type, float) and math.isnan(r.error_type)):
                predictions[(r.material_id, r.working_ion, r.hop_id)] = (float(r.predicted_em_eV),
                                                                        float(r.uncertainty_eV))
            else:
                extra_failures.append({"item": f"{r.material_id}#{r.hop_id}", "working_ion": r.working_ion,
                                       "stage": r.stage, "error_type": r.error_type, "message": r.message})
    host_results = [batcher.results[k] for k in order]
    tables = assemble_tables(host_results, predictions, model_version, threshold)
    if extra_failures:
        tables["failures"] = pd.concat([tables["failures"], pd.DataFrame(extra_failures, columns=FAILURE_COLUMNS)],
                                       ignore_index=True)
    timings["assemble"] = time.perf_counter() - t3
    rss.pop(0, None)
    info = {"device": device_used, "resume": counts,
            "workers": {"processes": len(rss),
                        "peak_rss_mib": round(max(rss.values()), 1) if rss else None}}
    return tables, info
