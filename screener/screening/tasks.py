"""The pure tasks of a screen: the hops of one host, and the predictions of one batch of hops.

A host task returns the cleaned cell and the hop definitions (JSON), and a batch task rebuilds its
bands from them on the worker, so a resumed run never needs to redo a host's symmetry analysis to
predict its remaining hops. On a CPU :func:`host_batches` does both for one host in one task.
None raises for a bad input: failures come back as rows.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from screener.core.band import Band
from screener.core.errors import BandTooLargeError, ScreenerError
from screener.core.hashing import structure_hash
from screener.core.memory import peak_rss_mib, tune_malloc
from screener.model.descriptors import FEATURE_NAMES, band_features
from screener.model.graphs import GraphCache
from screener.model.predictor import load_predictor
from screener.pathways.bands import build_band
from screener.pathways.config import PathwayConfig
from screener.pathways.network import Hop, HostPathways
from screener.pathways.search import find_pathways
from screener.screening.execution import hold_worker_threads

log = logging.getLogger(__name__)

#: On a CPU, graphs per forward pass are capped so that a pass holds about this many atoms: the
#: message passing is memory-bound and larger passes fall out of cache (measured ~1.8x slower
#: per band at 32 bands of ~150 sites than one at a time).
CPU_FORWARD_SITES = 384


@dataclass(frozen=True)
class BandSpec:
    """How a worker rebuilds one hop's band: the host's cleaned cell and the hop (JSON-ready).

    Specs of one host share one ``cell`` mapping, so a batch carries each cell once.

    Attributes:
        cell: ``lattice``, ``species``, ``frac_coords``, ``ion_sites`` and ``void_sites`` of the
            cleaned cell (with the ion at its void sites, when there are any).
        ion: the working ion.
        hop: :meth:`Hop.to_dict` of the hop.
        config: the settings the hop was found with.
    """

    cell: dict[str, Any]
    ion: str
    hop: dict[str, Any]
    config: PathwayConfig


@dataclass(frozen=True)
class PackedStructure:
    """A host structure as one pickled blob, for the trip to a worker.

    Dask pickles a task's arguments with out-of-band buffers: a pymatgen ``Structure`` becomes one
    frame per site (each site's coordinates are a numpy array), and the scheduler and the worker
    handle every frame on their event loops, ~0.3 ms a host of 28 sites. One blob is one frame.

    Attributes:
        data: the structure, pickled in-band.
    """

    data: bytes

    @classmethod
    def pack(cls, structure: Any) -> PackedStructure:
        """Pickle ``structure`` (with its site properties) into one blob."""
        return cls(pickle.dumps(structure, protocol=pickle.HIGHEST_PROTOCOL))

    def unpack(self) -> Any:
        """The structure."""
        return pickle.loads(self.data)  # noqa: S301 - packed by this run's client (see pack)


def failure_row(item: str, ion: str, exc: BaseException, stage: str | None = None) -> dict[str, str]:
    return {
        "item": item,
        "working_ion": ion,
        "stage": stage or getattr(exc, "stage", "screener"),
        "error_type": type(exc).__name__,
        "message": failure_message(exc),
    }


def failure_message(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return ("the worker processing it died repeatedly (out of memory, or a crash in native "
                "code); the input was not screened. Rerun the same command to retry it")
    return str(exc)


def host_pathways(item: str, structure, ion: str, source: str, config: PathwayConfig) -> dict[str, Any]:
    """Hops of one host, never raising (except MemoryError): a JSON-ready mapping.

    Args:
        item: the input's id.
        structure: a pymatgen ``Structure``, or a :class:`PackedStructure` of one.
        ion: the working ion.
        source: the source's name.
        config: pathway settings.

    Returns:
        ``hops``: one record per hop x limit; ``hop_specs``: ``{hop_id: hop dict}`` for the hops
        whose band fits ``config.max_band_sites``; ``cell``: the cleaned cell their bands are
        built from; ``edges``: the periodic hop network; ``failures``: failure rows;
        ``structure``: structure-level fields (None when the host failed); ``seconds``.
    """

    tune_malloc()
    t0 = time.perf_counter()
    out: dict[str, Any] = {"item": item, "ion": ion, "hops": [], "hop_specs": {}, "cell": None,
                           "edges": [], "failures": [], "structure": None}

    def done() -> dict[str, Any]:
        out.update(seconds=time.perf_counter() - t0, pid=os.getpid(), peak_rss_mib=peak_rss_mib())
        return out

    try:
        if isinstance(structure, PackedStructure):
            structure = structure.unpack()
        pw = find_pathways(structure, ion, config)
    except ScreenerError as exc:
        out["failures"].append(failure_row(item, ion, exc))
        return done()
    except MemoryError:
        raise  # not a property of the input: the task fails and a rerun retries it
    except Exception as exc:  # noqa: BLE001 - any failure of one host is a row, not a crash
        out["failures"].append(failure_row(item, ion, exc, stage="pathways"))
        return done()
    s = pw.structure
    shash = structure_hash(pw.host_structure)  # the real host (no ion at its voids)
    out["structure"] = {"material_id": item, "formula": pw.formula, "working_ion": ion,
                        "source": source, "structure_hash": shash,
                        "spacegroup": f"{pw.spacegroup[0]} ({pw.spacegroup[1]})"}
    out["edges"] = [[int(u), int(v), [int(x) for x in j], int(lab)] for u, v, j, lab in pw.edges]
    out["cell"] = {"lattice": s.lattice.matrix.tolist(), "species": [site.specie.symbol for site in s],
                   "frac_coords": s.frac_coords.tolist(), "ion_sites": [int(i) for i in pw.ion_sites],
                   "void_sites": [int(i) for i in pw.void_sites]}
    for hop in pw.hops:
        rec = {"material_id": item, "formula": pw.formula, "working_ion": ion, "limit": hop.limit,
               "hop_id": hop.hop_id, "length_A": hop.length_A, "multiplicity": hop.multiplicity,
               "source": source, "structure_hash": shash, "hop_label": hop.hop_label,
               "isite_wyckoff": hop.isite_wyckoff, "esite_wyckoff": hop.esite_wyckoff,
               "isite_kind": hop.isite_kind, "esite_kind": hop.esite_kind,
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
            out["failures"].append(failure_row(f"{item}#{hop.hop_id}", ion, exc))
        except Exception as exc:  # noqa: BLE001
            out["failures"].append(failure_row(f"{item}#{hop.hop_id}", ion, exc, stage="band"))
        out["hops"].append(rec)
    return done()


def host_batches(item: str, structure, ion: str, source: str, config: PathwayConfig,
                 model_dir: str | None, device: str = "cpu", batch_size: int = 8) -> dict[str, Any]:
    """The hops of one host and their predictions, in one task (the CPU path of a screen).

    On a CPU batching buys nothing (a model costs per band), so a host's hops are predicted where
    they were found: no second task per batch, no cell sent back and forth. The hops are cut into
    batches of ``batch_size`` in the order of ``hop_specs``, as :class:`~screener.screening.run.Batcher`
    cuts them with ``per_host=True``, so each batch is stored under the same key as if a separate
    task had predicted it.

    Args:
        item, structure, ion, source, config: as for :func:`host_pathways`.
        model_dir, device, batch_size: as for :func:`predict_batch`; ``batch_size`` also cuts
            the batches.

    Returns:
        :func:`host_pathways`'s mapping plus ``batches``: ``{"keys", "result"}`` per batch, the
        result as :func:`predict_batch` returns it. A batch whose prediction raised is left out
        (the caller predicts it in a task of its own, which reports the error); MemoryError fails
        the task (the caller then runs the host again in two steps). Every batch is predicted,
        also one whose part a resumed run already holds (the caller keeps the stored one).
    """
    out = host_pathways(item, structure, ion, source, config)
    out["batches"] = []
    specs = [((item, ion, hop_id), BandSpec(out["cell"], ion, hop, config))
             for hop_id, hop in out["hop_specs"].items()]
    for i in range(0, len(specs), max(1, batch_size)):
        chunk = specs[i : i + max(1, batch_size)]
        keys = [k for k, _ in chunk]
        try:
            res = predict_batch(keys, [spec for _, spec in chunk], model_dir, device, batch_size)
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - predicted again in a task of its own, which reports it
            continue
        out["batches"].append({"keys": [list(k) for k in keys], "result": res})
    return out


def host_group_batches(hosts: list[tuple[str, Any, str, str]], config: PathwayConfig, model_dir: str | None,
                       device: str = "cpu", batch_size: int = 8) -> list[dict[str, Any]]:
    """:func:`host_batches` of several small hosts in one task, one after the other.

    Args:
        hosts: ``(item, structure, ion, source)`` of each host (structure packed or not).
        config, model_dir, device, batch_size: as for :func:`host_batches`.

    Returns:
        One :func:`host_batches` mapping per host, in order. A MemoryError fails the whole task
        (the caller then runs each host in a task of its own).
    """
    return [host_batches(item, structure, ion, source, config, model_dir, device, batch_size)
            for item, structure, ion, source in hosts]


def build_spec_band(spec: BandSpec, cache: dict[int, Any] | None = None):
    """The band of a :class:`BandSpec` (the cell is rebuilt once per ``cache``)."""
    from pymatgen.core import Lattice, Structure


    cache = {} if cache is None else cache
    pw = cache.get(id(spec.cell))
    if pw is None:
        c = spec.cell
        s = Structure(Lattice(c["lattice"]), c["species"], c["frac_coords"])
        pw = HostPathways(structure=s, ion=spec.ion, hops=[], edges=[], ion_sites=list(c["ion_sites"]),
                          void_sites=list(c.get("void_sites", [])),
                          config=spec.config)
        cache[id(spec.cell)] = pw
    d = spec.hop
    hop = Hop(**{**d, "isite_frac": tuple(d["isite_frac"]), "esite_frac": tuple(d["esite_frac"])})
    return build_band(pw, hop, spec.config)


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def worker_device(device: str) -> str:
    """The GPU of this Dask worker: ``cuda`` becomes ``cuda:<n>`` on a machine with several GPUs.

    A local cluster starts one worker per GPU, named 0, 1, ...; without this every worker would
    put its model on the first GPU. Workers with other names (a cluster of your own, where each
    worker usually sees one GPU through ``CUDA_VISIBLE_DEVICES``) and processes outside Dask keep
    ``cuda``: torch's current device.
    """
    if device != "cuda":
        return device
    import torch

    n = torch.cuda.device_count()
    if n <= 1:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):  # not in a Dask worker
        return device
    return f"cuda:{name % n}" if isinstance(name, int) else device


#: Hops per model batch when none is given: on a GPU a batch task is one forward pass, and 32
#: bands fill it; on a CPU batching buys nothing (the message passing costs per bond, not per
#: call), the host tasks predict their own hops and the size only cuts the stored batches.
DEFAULT_BATCH_SIZE = {"cuda": 32, "cpu": 8}


def default_batch_size(device: str) -> int:
    """Hops per model batch for a resolved ``device`` (see :data:`DEFAULT_BATCH_SIZE`)."""
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

    tune_malloc()
    t0 = time.perf_counter()
    device = worker_device(resolve_device(device))
    hold_worker_threads()
    predictor = load_predictor(model_dir, device)
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
    # The model's inputs, band by band (one bad band fails alone): graphs for graph members (none
    # in a descriptor-tree model: they are not built), descriptors for tree members.
    cache = GraphCache(predictor.graph_config) if predictor.members else None
    descriptors: dict[int, dict[str, float]] = {}
    for i, b in enumerate(built):
        if b is None:
            continue
        try:
            if cache is not None:
                cache.get(b)
            if predictor.tree_models:
                descriptors[i] = band_features(b)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001
            failed[i] = ("graph" if cache is not None else "descriptors", exc)
    t3 = time.perf_counter()
    good = [i for i in range(len(keys)) if i not in failed]
    em: dict[int, tuple[float, float]] = {}

    def predict(rows: list[int]) -> None:
        bands_ = [built[i] for i in rows]
        X = (pd.DataFrame([descriptors[i] for i in rows], columns=list(FEATURE_NAMES), dtype=float)
             if predictor.tree_models else None)
        pred = predictor.predict(bands_, batch_size=forward_batch_size(bands_, batch_size, device),
                                 cache=cache, features=X)
        em.update({i: (float(pred.em[j]), float(pred.uncertainty[j])) for j, i in enumerate(rows)})

    if good:
        try:
            predict(good)
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - one band (or a pass too large for the GPU) must not sink the batch
            if len(good) == 1:
                raise
            log.info("a batch of %d bands failed in the model; predicting them one by one", len(good), exc_info=True)
            for i in good:
                try:
                    predict([i])
                except MemoryError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    failed[i] = ("model", exc)
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
            "peak_rss_mib": peak_rss_mib(),
            "seconds": {"model_load": t1 - t0, "bands": t2 - t1, "inputs": t3 - t2, "model": t4 - t3}}
