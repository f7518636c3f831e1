"""A second opinion on the top candidates: NEB with a universal ML potential, combined with the prediction.

For each hop that ``screener export`` would hand to DFT (the path hops of the top shortlisted
materials, see :mod:`screener.handoff.export`), :func:`~screener.handoff.neb.neb_refine` runs the
published MLIP-NEB protocol (:class:`~screener.handoff.neb.RefineSettings`):

1. relaxes both end points (host + ion at the hop's first and last site) at fixed cell: a NEB
   between unrelaxed end points measures the relaxation, not the barrier;
2. interpolates ``n_intermediate`` images between the relaxed end points (linear, then IDPP);
3. relaxes the band, on a GPU every image of a step in one batched call where the potential
   allows (:mod:`screener.handoff.batching`); where a symmetry swaps the hop's sites, the final
   end point starts from the image of the initial one and the second half of the images takes
   its partners' results (:mod:`screener.handoff.symmetry`).

The NEB barrier ``neb_em_eV`` is the highest minus the lowest image energy (the convention of the
literature and of the published benchmark; ``neb_em_forward_eV`` and ``neb_em_reverse_eV`` are the
barriers from each end point); ``refined.parquet`` has it beside the model's
prediction and their combination (:mod:`screener.handoff.combine`: ``refined_em_eV`` and
``refined_uncertainty_eV``, the fast prediction where the NEB failed, ``refined_status`` says
which). The ranking of the run is not changed. Any potential of
:data:`~screener.handoff.potentials.POTENTIALS`; ``chgnet`` (the ``refine`` extra) and SevenNet's
``7net-0``, ``7net-l3i5``, ``7net-mf-0`` ship their weights and run offline.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from screener.core.files import write_parquet_atomic
from screener.core.hashing import content_hash, structure_hash
from screener.handoff.combine import refined_status
from screener.handoff.export import REFINED_DIR, regenerate_bands, select_hops
from screener.handoff.neb import NebResult, RefineSettings, StepCallback, refine_band
from screener.handoff.neb_io import POTENTIAL_INFO, hop_folder_name
from screener.handoff.potentials import (
    check_potential,
    load_potential,
    potential_version,
)
from screener.handoff.refined_table import REFINED_COLUMNS, ROW_KEY, current_rows, neb_fields
from screener.screening.execution import TaskRunner, dask_client
from screener.screening.rundir import REFINED_TABLE, load_run

if TYPE_CHECKING:
    from ase import Atoms

    from screener.core.band import Band


log = logging.getLogger(__name__)


def refine_task(key: tuple[str, str, str], band: Band, settings: RefineSettings,
                on_step: StepCallback | None = None) -> dict[str, Any]:
    """One task: refine one hop. Returns ``{"key", "result"}`` (exceptions propagate)."""
    return {"key": key, "result": refine_band(band, settings, on_step)}


def _refine_here(tasks: list[tuple], settings: RefineSettings, progress: Any) -> Iterator[tuple[Any, Any]]:
    """Refine the hops in this process, one after the other: ``(key, result or exception)`` as each ends."""
    hop_bar = progress.add_task(f"refine ({settings.potential})", total=len(tasks)) if progress else None
    for key, band, st in tasks:
        step_bar = progress.add_task(f"{key[2]}", total=st.relax_steps) if progress else None

        def on_step(phase: str, step: int, max_steps: int, bar: Any = step_bar, hop: str = key[2]) -> None:
            progress.update(bar, description=f"{hop} {phase}", completed=step, total=max_steps)

        try:
            res: Any = refine_task(key, band, st, on_step if progress else None)
        except Exception as exc:  # noqa: BLE001 - the caller turns it into an error row
            res = exc
        if progress:
            progress.remove_task(step_bar)
            progress.advance(hop_bar)
        yield key, res


def _refine_on_dask(tasks: list[tuple], settings: RefineSettings, progress: Any, n_workers: int,
                    scheduler: str | None) -> Iterator[tuple[Any, Any]]:
    """Refine the hops on Dask workers: ``(key, result or exception)`` as each ends."""
    with dask_client(n_workers, scheduler, "cpu") as client:
        bar = progress.add_task(f"refine ({settings.potential})", total=len(tasks)) if progress else None
        runner = TaskRunner(client)
        for key, band, st in tasks:
            runner.submit(key, refine_task, (key, band, st))
        for key, res in runner.results():
            if progress:
                progress.advance(bar)
            yield key, res


def refine_key(band: Band, settings: RefineSettings) -> str:
    """What a hop's NEB depends on: its band's end points, the potential and its version, the NEB settings.

    Not where or how it ran (``device``, ``threads``, ``batched``). A hop whose row in
    ``refined.parquet`` has this key and a barrier is not refined again.
    """
    st = {k: v for k, v in asdict(settings).items() if k not in ("device", "threads", "batched")}
    return content_hash({"settings": st, "potential_version": potential_version(settings.potential),
                         "band": [structure_hash(band.endpoint(0)), structure_hash(band.endpoint(-1))]})[:16]


def result_row(hop: pd.Series, settings: RefineSettings, res: NebResult | None = None,
               error: str = "", images_path: str = "", seconds: float = math.nan, key: str = "") -> dict[str, Any]:
    """One ``refined.parquet`` row from a hop's ``hops.parquet`` row and its NEB result (``key``: :func:`refine_key`)."""
    pred = float(hop["predicted_em_eV"])
    row: dict[str, Any] = {c: hop.get(c) for c in ("material_id", "formula", "working_ion", "limit", "hop_id",
                                                   "hop_label", "length_A", "uncertainty_eV")}
    row.update(potential=settings.potential, potential_version=potential_version(settings.potential),
               predicted_em_eV=pred, fmax_eV_A=settings.fmax, images_path=images_path, error=error,
               finished_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), seconds=seconds,
               refine_key=key)
    neb = res.em_eV if res is not None else math.nan
    fields, combination = neb_fields(settings.potential, pred, float(hop.get("uncertainty_eV", math.nan)), neb)
    row.update(fields, refined_status=refined_status(neb, error, None if res is None else res.converged, combination))
    if res is None:
        row.update({c: math.nan for c in REFINED_COLUMNS if c not in row})
        row.update(converged=False, endpoints_converged=False, n_images=0, n_atoms=0,
                   initial_steps=0, final_steps=0, final_from_symmetry=False, neb_steps=0,
                   evaluations=0)
        return row
    row.update(
        neb_em_eV=res.em_eV, neb_em_forward_eV=res.em_forward_eV, neb_em_reverse_eV=res.em_reverse_eV,
        e_initial_eV=res.energies_eV[0], e_final_eV=res.energies_eV[-1], e_saddle_eV=max(res.energies_eV),
        initial_max_force_eV_A=res.initial.max_force_eV_A, final_max_force_eV_A=res.final.max_force_eV_A,
        initial_steps=res.initial.steps, final_steps=res.final.steps,
        final_from_symmetry=bool(res.final.from_symmetry),
        initial_ion_shift_A=res.ion_shift_A[0], final_ion_shift_A=res.ion_shift_A[1],
        endpoints_converged=bool(res.initial.converged and res.final.converged),
        neb_max_force_eV_A=res.max_force_eV_A, neb_steps=res.steps, evaluations=res.evaluations,
        converged=res.converged,
        n_images=len(res.images), n_atoms=len(res.images[0]), seconds=res.seconds,
    )
    return row


def merge_refined(old: pd.DataFrame | None, new: pd.DataFrame, run_path: Path | None = None) -> pd.DataFrame:
    """``old`` rows not redone in ``new`` (same material, ion, hop and potential), then ``new``.

    A hop that failed now keeps an earlier row that has a NEB barrier (a rerun that cannot
    reach the source, or runs out of memory, must not erase a finished NEB); its error is
    logged. Old rows of an earlier screener are brought up to date (:func:`current_rows`).
    """
    key = ROW_KEY
    new = new[REFINED_COLUMNS]
    if old is None or not len(old):
        return new.reset_index(drop=True)
    old = current_rows(old, run_path)
    finished = {tuple(k) for k, neb in zip(old[key].to_numpy().tolist(), pd.to_numeric(old["neb_em_eV"],
                                                                                         errors="coerce"))
                if math.isfinite(neb)}
    failed = (new["error"].fillna("") != "").to_numpy()
    kept_old = [bad and tuple(k) in finished for k, bad in zip(new[key].to_numpy().tolist(), failed)]
    for (_, r), k in zip(new.iterrows(), kept_old):
        if k:
            log.warning("%s %s (%s): failed now (%s); its earlier NEB is kept", r["material_id"], r["hop_id"],
                        r["potential"], r["error"])
    new = new[[not k for k in kept_old]]
    done = set(map(tuple, new[key].to_numpy().tolist()))
    keep = old[[tuple(k) not in done for k in old[key].to_numpy().tolist()]]
    parts = [p for p in (keep, new) if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else new.reset_index(drop=True)


def write_images(images: list[Atoms], path: Path, potential: str | None = None) -> None:
    """All NEB images with their energies and forces in one ASE trajectory.

    ``potential`` is recorded in each image's ``info`` (``screener_potential``), so that
    ``screener learn`` knows these are not DFT images.
    """
    from ase.io import write

    if potential:
        for im in images:
            im.info[POTENTIAL_INFO] = potential
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp, images, format="traj")
    tmp.replace(path)


def _finished_rows(table: pd.DataFrame | None, potential: str, run_path: Path) -> dict[tuple, dict[str, Any]]:
    """``{(material, ion, hop): row}`` of the rows of ``potential`` with a NEB barrier and no error."""
    if table is None or not len(table):
        return {}
    t = current_rows(table, run_path)
    ok = (t["potential"] == potential) & pd.to_numeric(t["neb_em_eV"], errors="coerce").notna() & \
        (t["error"].fillna("") == "")
    return {(r["material_id"], r["working_ion"], r["hop_id"]): r for r in t[ok].to_dict("records")}


def refine_run(run_dir: str | Path, top: int = 3, settings: RefineSettings | None = None, *,
               hop_ids: list[str] | None = None, limits: tuple[str, ...] | None = None,
               workers: int | None = None, scheduler: str | None = None, synchronous: bool = False,
               source: str | None = None, progress: Any = None, redo: bool = False) -> pd.DataFrame:
    """Refine the path hops of the top shortlisted materials of a run and record the results.

    Writes ``RUN_DIR/refined.parquet`` (rows of earlier runs for other hops or potentials are
    kept; each hop's row as soon as it is done) and
    ``RUN_DIR/refined/<material>__<hop_id>/<potential>.traj``. A hop already refined with the
    same potential, settings and band (:func:`refine_key`) keeps its row and is not run again,
    so a refine that was interrupted goes on where it stopped.

    Args:
        run_dir: a ``screener run`` output folder.
        top: shortlist rows whose path hops are refined.
        settings: potential and NEB settings.
        hop_ids: refine only these hops (of the selection).
        limits: refine only hops in these limits.
        workers: worker processes of a local Dask cluster (default: min(hops, CPU cores)).
        scheduler: address of an existing Dask scheduler.
        synchronous: run in this process.
        source: where to fetch structures again (default: what ``run.json`` records).
        progress: a rich Progress, or None.
        redo: refine every selected hop again, even those already refined alike.

    Returns:
        The rows of this invocation (one per hop, the kept ones included, their hop ids in
        ``attrs["kept_hops"]``), ``error`` set where a hop failed.

    Raises:
        PotentialNotInstalledError: the potential is missing.
        RunDirError: the run directory is unreadable or its source cannot be reopened.
    """
    import os


    st = settings or RefineSettings()
    check_potential(st.potential)
    run = load_run(run_dir)
    load_potential(st.potential, st.device)  # weights that cannot be had stop the run before any work
    selected = select_hops(run, top)
    if hop_ids:
        missing = set(hop_ids) - set(selected["hop_id"])
        if missing:
            log.warning("hops not among the path hops of the top %d materials, skipped: %s", top, sorted(missing))
        selected = selected[selected["hop_id"].isin(hop_ids)]
    if limits:
        selected = selected[selected["limit"].isin(limits)]
    selected = selected.reset_index(drop=True)
    if not len(selected):
        log.warning("nothing to refine")
        return pd.DataFrame(columns=REFINED_COLUMNS)
    bands = regenerate_bands(run, selected, source)
    by_key = {(h["material_id"], h["working_ion"], h["hop_id"]): h for _, h in selected.iterrows()}
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    table = run.refined

    def record(key: tuple[str, str, str], row: dict[str, Any]) -> None:
        """Keep a hop's row, in ``refined.parquet`` at once: an interrupted refine loses no finished hop."""
        nonlocal table
        rows[key] = row
        table = merge_refined(table, pd.DataFrame([row], columns=REFINED_COLUMNS), run.path)
        write_parquet_atomic(table, run.path / REFINED_TABLE)

    earlier = _finished_rows(table, st.potential, run.path)
    tasks, reused = [], []
    for key, h in by_key.items():
        b = bands[key]
        if isinstance(b, Exception):
            record(key, result_row(h, st, error=f"{type(b).__name__}: {b}"))
            log.warning("%s %s: band not rebuilt: %s", key[0], key[2], rows[key]["error"])
            continue
        k = refine_key(b, st)
        if not redo and earlier.get(key, {}).get("refine_key") == k:
            rows[key] = earlier[key]
            reused.append(key[2])
            continue
        tasks.append((key, b, st, k))
    if reused:
        log.info("%d hop(s) already refined with %s, these settings and this band, kept (redo to run them again): %s",
                 len(reused), st.potential, ", ".join(sorted(reused)[:10]))
    multi_ion = run.shortlist["working_ion"].nunique() > 1
    if tasks:
        n_workers = workers or max(1, min(len(tasks), os.cpu_count() or 1))
        keys = {key: k for key, _, _, k in tasks}
        plain = [(key, b, s) for key, b, s, _ in tasks]
        if scheduler is None and (synchronous or n_workers == 1):
            # One process does the work: run it here, with a progress line per optimiser step.
            results = _refine_here(plain, st, progress)
        else:
            results = _refine_on_dask(plain, st, progress, n_workers, scheduler)
        with contextlib.closing(results):  # a failed write closes the Dask client, not the garbage collector
            for key, res in results:
                h = by_key[key]
                if isinstance(res, BaseException):
                    record(key, result_row(h, st, error=f"{type(res).__name__}: {res}", key=keys[key]))
                    log.warning("%s %s: refine failed: %s", key[0], key[2], res)
                    continue
                neb: NebResult = res["result"]
                folder = hop_folder_name(key[0], key[2], key[1] if multi_ion else None)
                rel = f"{REFINED_DIR}/{folder}/{st.potential}.traj"
                write_images(neb.images, run.path / rel, st.potential)
                record(key, result_row(h, st, neb, images_path=rel, key=keys[key]))
    new = pd.DataFrame([rows[k] for k in by_key], columns=REFINED_COLUMNS)
    new.attrs["kept_hops"] = sorted(reused)
    return new
