"""A second opinion on the top candidates: climbing-image NEB with a universal ML potential.

For each hop that ``screener export`` would hand to DFT (the path hops of the top shortlisted
materials, see :mod:`screener._export`), :func:`neb_refine`:

1. relaxes both end points (host + ion at the hop's first and last site) at fixed cell with
   FIRE: a CI-NEB between unrelaxed end points measures the relaxation, not the barrier;
2. interpolates ``n_intermediate`` images between the relaxed end points (linear, then IDPP);
3. runs a climbing-image NEB with FIRE to ``fmax`` in a bounded number of steps, one calculator
   per image, all sharing one loaded model (a single shared calculator was 4x slower).

The barrier is ``max(E_image) - E_initial``; it sits beside the model's prediction in
``refined.parquet`` and is never used to rank. Potentials whose weights ship in their wheel, so
they run offline: ``chgnet`` (CHGNet 0.3.0, the ``refine`` extra) and ``sevenn`` (SevenNet-0).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib.util
import io
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from screener._errors import ScreenerError

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from screener._band import Band

log = logging.getLogger(__name__)

POTENTIALS = ("chgnet", "sevenn")
_MODULES = {"chgnet": "chgnet", "sevenn": "sevenn"}
_INSTALL = {"chgnet": "pip install 'screener[refine]'  (or: pip install chgnet)",
            "sevenn": "pip install sevenn"}
#: |NEB - predicted| above which a hop is flagged as a disagreement (eV).
DISAGREEMENT_EV = 0.3

REFINED_COLUMNS = [
    "material_id", "formula", "working_ion", "limit", "hop_id", "hop_label", "length_A",
    "potential", "potential_version", "neb_em_eV", "neb_em_reverse_eV", "predicted_em_eV",
    "uncertainty_eV", "delta_eV", "disagreement", "e_initial_eV", "e_final_eV", "e_saddle_eV",
    "initial_max_force_eV_A", "final_max_force_eV_A", "initial_steps", "final_steps",
    "initial_ion_shift_A", "final_ion_shift_A", "endpoints_converged", "neb_max_force_eV_A",
    "neb_steps", "converged", "n_images", "n_atoms", "fmax_eV_A", "seconds", "images_path",
    "error", "finished_at",
]


class PotentialNotInstalledError(ScreenerError):
    """The ML potential asked for is not installed."""

    stage = "refine"


@dataclass(frozen=True)
class RefineSettings:
    """Settings of one CI-NEB refinement.

    Attributes:
        potential: ``chgnet`` or ``sevenn``.
        n_intermediate: images between the end points.
        fmax: force convergence of the end-point relaxations and of the NEB (eV/Å).
        relax_steps: most FIRE steps per end-point relaxation.
        neb_steps: most FIRE steps of the NEB.
        spring: NEB spring constant (eV/Å²).
        climb: climbing image on.
        device: ``cpu`` or ``cuda``.
        threads: torch threads per task (None: torch's default).
    """

    potential: str = "chgnet"
    n_intermediate: int = 5
    fmax: float = 0.1
    relax_steps: int = 200
    neb_steps: int = 200
    spring: float = 0.1
    climb: bool = True
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.potential not in POTENTIALS:
            raise ValueError(f"potential must be one of {POTENTIALS}, got {self.potential!r}")
        if self.n_intermediate < 1:
            raise ValueError(f"need at least one intermediate image, got {self.n_intermediate}")
        if not (self.fmax > 0):
            raise ValueError(f"fmax must be positive, got {self.fmax}")
        if self.relax_steps < 0 or self.neb_steps < 1:
            raise ValueError("relax_steps must be >= 0 and neb_steps >= 1")


# ----------------------------------------------------------------------------- potentials
def check_potential(name: str) -> None:
    """Raise :class:`PotentialNotInstalledError` (with the install command) if ``name`` is missing."""
    if name not in POTENTIALS:
        raise PotentialNotInstalledError(f"unknown potential {name!r}; choose one of {POTENTIALS}")
    if importlib.util.find_spec(_MODULES[name]) is None:
        raise PotentialNotInstalledError(
            f"the {name} potential is not installed: {_INSTALL[name]}")


_MODELS: dict[tuple[str, str], Any] = {}


@contextlib.contextmanager
def _quiet():
    """Silence the banners potentials print on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _model(name: str, device: str) -> Any:
    """The loaded model of a potential, once per process (i.e. once per Dask worker)."""
    key = (name, device)
    if key not in _MODELS:
        check_potential(name)
        with _quiet():
            if name == "chgnet":
                from chgnet.model import CHGNet

                _MODELS[key] = CHGNet.load(verbose=False, use_device=device)
            else:
                from sevenn.calculator import SevenNetCalculator

                _MODELS[key] = SevenNetCalculator("7net-0", device=device).model
    return _MODELS[key]


def make_calculators(name: str, n: int, device: str = "cpu") -> list[Calculator]:
    """``n`` calculators of one potential sharing one loaded model (one per NEB image)."""
    model = _model(name, device)
    with _quiet():
        if name == "chgnet":
            cls = _chgnet_forces_calculator()
            return [cls(model=model, use_device=device, on_isolated_atoms="ignore") for _ in range(n)]
        from sevenn.calculator import SevenNetCalculator

        return [SevenNetCalculator(model, file_type="model_instance", device=device) for _ in range(n)]


@functools.cache
def _chgnet_forces_calculator() -> type:
    """CHGNetCalculator computing energy and forces only (no stress, no magmoms): ~1.8x faster.

    Every relaxation and NEB here is at fixed cell, so the stress is never needed.
    """
    from chgnet.model.dynamics import CHGNetCalculator

    class CHGNetForcesCalculator(CHGNetCalculator):
        implemented_properties = ["energy", "free_energy", "forces"]  # noqa: RUF012

        def calculate(self, atoms=None, properties=None, system_changes=None, task="ef"):  # noqa: ANN001
            super().calculate(atoms, properties, system_changes, task="ef")

    return CHGNetForcesCalculator


def potential_version(name: str) -> str:
    """``<package>-<version>/<model>`` of a potential."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version(_MODULES[name])
    except PackageNotFoundError:
        v = "?"
    model = {"chgnet": "CHGNet-0.3.0", "sevenn": "7net-0"}[name]
    return f"{name}-{v}/{model}"


# ----------------------------------------------------------------------------- pure science
@dataclass
class RelaxResult:
    """A fixed-cell relaxation.

    Attributes:
        atoms: the relaxed atoms (with a single-point calculator holding energy and forces).
        energy_eV: final energy.
        max_force_eV_A: largest atomic force at the end.
        steps: optimiser steps taken.
        converged: ``max_force_eV_A <= fmax``.
    """

    atoms: Atoms
    energy_eV: float
    max_force_eV_A: float
    steps: int
    converged: bool


def _max_force(forces: np.ndarray) -> float:
    return float(np.sqrt((np.asarray(forces) ** 2).sum(axis=1)).max()) if len(forces) else 0.0


def _freeze(atoms: Atoms) -> Atoms:
    """A copy carrying its current energy and forces in a single-point calculator."""
    from ase.calculators.singlepoint import SinglePointCalculator

    e, f = atoms.get_potential_energy(), atoms.get_forces()
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=float(e), forces=np.array(f))
    return out


def relax_fixed_cell(atoms: Atoms, calc: Calculator, fmax: float = 0.1, steps: int = 200) -> RelaxResult:
    """Relax atomic positions at fixed cell with FIRE (``atoms`` is not modified)."""
    from ase.optimize import FIRE

    a = atoms.copy()
    a.calc = calc
    n = 0
    if steps > 0:
        with FIRE(a, logfile=None) as opt:
            opt.run(fmax=fmax, steps=steps)
            n = int(opt.nsteps)
    frozen = _freeze(a)
    mf = _max_force(frozen.get_forces())
    return RelaxResult(frozen, float(frozen.get_potential_energy()), mf, n, mf <= fmax)


@dataclass
class NebResult:
    """A CI-NEB refinement of one hop.

    Attributes:
        images: every image, end points included, each with a single-point calculator.
        energies_eV: energy of each image.
        em_eV: forward barrier, ``max(energies) - energies[0]``.
        em_reverse_eV: ``max(energies) - energies[-1]``.
        initial: the relaxed initial end point.
        final: the relaxed final end point.
        max_force_eV_A: NEB residual force at the end.
        steps: NEB optimiser steps taken.
        converged: NEB and both end points converged.
        ion_shift_A: how far the migrating ion (atom 0) moved while relaxing each end point.
        seconds: wall time.
    """

    images: list[Atoms]
    energies_eV: list[float]
    em_eV: float
    em_reverse_eV: float
    initial: RelaxResult
    final: RelaxResult
    max_force_eV_A: float
    steps: int
    converged: bool
    ion_shift_A: tuple[float, float]
    seconds: float


def neb_refine(initial: Atoms, final: Atoms, settings: RefineSettings | None = None) -> NebResult:
    """Relax both end points, then run a climbing-image NEB between them.

    Args:
        initial: host plus the ion at its initial site (ion first).
        final: the same atoms with the ion at its final site.
        settings: potential, image count, convergence and step bounds.

    Returns:
        The relaxed images, energies and barrier.
    """
    st = settings or RefineSettings()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # CHGNet's own harmless warning on every evaluation (a tensor->scalar conversion)
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
        return _neb_refine(initial, final, st, t0)


def _neb_refine(initial: Atoms, final: Atoms, st: RefineSettings, t0: float) -> NebResult:
    from ase.mep.neb import NEB
    from ase.optimize import FIRE

    from screener._export import idpp_refine, linear_images

    if st.threads:
        import torch

        torch.set_num_threads(int(st.threads))
    calcs = make_calculators(st.potential, st.n_intermediate + 2, st.device)
    r0 = relax_fixed_cell(initial, calcs[0], st.fmax, st.relax_steps)
    r1 = relax_fixed_cell(final, calcs[-1], st.fmax, st.relax_steps)
    shifts = (float(np.linalg.norm(_mic_shift(initial, r0.atoms))),
              float(np.linalg.norm(_mic_shift(final, r1.atoms))))
    images = idpp_refine(linear_images(r0.atoms, r1.atoms, st.n_intermediate))
    images[0], images[-1] = r0.atoms, r1.atoms  # fixed end points: their energies are known
    for im, calc in zip(images[1:-1], calcs[1:-1]):
        im.calc = calc
    neb = NEB(images, k=st.spring, climb=st.climb, method="improvedtangent")
    with FIRE(neb, logfile=None) as opt:
        opt.run(fmax=st.fmax, steps=st.neb_steps)
        steps = int(opt.nsteps)
    # The NEB force (spring + perpendicular true force; climbing image included) that FIRE
    # converges; ASE's get_residual() leaves the climbing image out.
    residual = _max_force(neb.get_forces())
    frozen = [_freeze(im) for im in images]
    energies = [float(im.get_potential_energy()) for im in frozen]
    emax = max(energies)
    return NebResult(
        images=frozen, energies_eV=energies, em_eV=emax - energies[0], em_reverse_eV=emax - energies[-1],
        initial=r0, final=r1, max_force_eV_A=residual, steps=steps,
        converged=bool(residual <= st.fmax and r0.converged and r1.converged),
        ion_shift_A=shifts,
        seconds=time.perf_counter() - t0,
    )


def _mic_shift(before: Atoms, after: Atoms, index: int = 0) -> np.ndarray:
    """Minimum-image displacement of one atom between two configurations of one cell."""
    from ase.geometry import find_mic

    d = after.positions[index] - before.positions[index]
    vec, _ = find_mic(d[None, :], before.cell, pbc=True)
    return vec[0]


def refine_band(band: Band, settings: RefineSettings | None = None) -> NebResult:
    """:func:`neb_refine` between a band's end points (:meth:`Band.endpoint` 0 and -1)."""
    from screener._export import structure_to_atoms

    return neb_refine(structure_to_atoms(band.endpoint(0)), structure_to_atoms(band.endpoint(-1)), settings)


def refine_task(key: tuple[str, str, str], band: Band, settings: RefineSettings) -> dict[str, Any]:
    """One Dask task: refine one hop. Returns ``{"key", "result"}`` (exceptions propagate)."""
    return {"key": key, "result": refine_band(band, settings)}


def result_row(hop: pd.Series, settings: RefineSettings, res: NebResult | None = None,
               error: str = "", images_path: str = "", seconds: float = math.nan) -> dict[str, Any]:
    """One ``refined.parquet`` row from a hop's ``hops.parquet`` row and its NEB result."""
    pred = float(hop["predicted_em_eV"])
    row: dict[str, Any] = {c: hop.get(c) for c in ("material_id", "formula", "working_ion", "limit", "hop_id",
                                                   "hop_label", "length_A", "uncertainty_eV")}
    row.update(potential=settings.potential, potential_version=potential_version(settings.potential),
               predicted_em_eV=pred, fmax_eV_A=settings.fmax, images_path=images_path, error=error,
               finished_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), seconds=seconds)
    if res is None:
        row.update({c: math.nan for c in REFINED_COLUMNS if c not in row})
        row.update(disagreement=False, converged=False, endpoints_converged=False, n_images=0, n_atoms=0,
                   initial_steps=0, final_steps=0, neb_steps=0)
        return row
    delta = res.em_eV - pred
    row.update(
        neb_em_eV=res.em_eV, neb_em_reverse_eV=res.em_reverse_eV, delta_eV=delta,
        disagreement=bool(abs(delta) > DISAGREEMENT_EV) if math.isfinite(delta) else False,
        e_initial_eV=res.energies_eV[0], e_final_eV=res.energies_eV[-1], e_saddle_eV=max(res.energies_eV),
        initial_max_force_eV_A=res.initial.max_force_eV_A, final_max_force_eV_A=res.final.max_force_eV_A,
        initial_steps=res.initial.steps, final_steps=res.final.steps,
        initial_ion_shift_A=res.ion_shift_A[0], final_ion_shift_A=res.ion_shift_A[1],
        endpoints_converged=bool(res.initial.converged and res.final.converged),
        neb_max_force_eV_A=res.max_force_eV_A, neb_steps=res.steps, converged=res.converged,
        n_images=len(res.images), n_atoms=len(res.images[0]), seconds=res.seconds,
    )
    return row


def merge_refined(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` rows not redone in ``new`` (same material, ion, hop and potential), then ``new``."""
    key = ["material_id", "working_ion", "hop_id", "potential"]
    if old is None or not len(old):
        return new[REFINED_COLUMNS].reset_index(drop=True)
    old = old.reindex(columns=REFINED_COLUMNS)
    done = set(map(tuple, new[key].to_numpy().tolist()))
    keep = old[[tuple(k) not in done for k in old[key].to_numpy().tolist()]]
    parts = [p for p in (keep, new[REFINED_COLUMNS]) if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else new[REFINED_COLUMNS]


# ----------------------------------------------------------------------------- orchestration
def write_images(images: list[Atoms], path: Path) -> None:
    """All NEB images with their energies and forces in one ASE trajectory."""
    from ase.io import write

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp, images, format="traj")
    tmp.replace(path)


def refine_run(run_dir: str | Path, top: int = 3, settings: RefineSettings | None = None, *,
               hop_ids: list[str] | None = None, limits: tuple[str, ...] | None = None,
               workers: int | None = None, scheduler: str | None = None, synchronous: bool = False,
               source: str | None = None, progress: Any = None) -> pd.DataFrame:
    """Refine the path hops of the top shortlisted materials of a run and record the results.

    Writes ``RUN_DIR/refined.parquet`` (rows of earlier runs for other hops or potentials are
    kept) and ``RUN_DIR/refined/<material>__<hop_id>/<potential>.traj``.

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

    Returns:
        The rows of this invocation (one per hop), ``error`` set where a hop failed.

    Raises:
        PotentialNotInstalledError: the potential is missing.
        RunDirError: the run directory is unreadable or its source cannot be reopened.
    """
    import os

    from pipelines.dask_run import dask_client, map_tasks
    from screener._export import REFINED_DIR, REFINED_TABLE, hop_folder_name, load_run, regenerate_bands, select_hops
    from screener._io import write_parquet_atomic

    st = settings or RefineSettings()
    check_potential(st.potential)
    run = load_run(run_dir)
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
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    tasks = []
    for _, h in selected.iterrows():
        key = (h["material_id"], h["working_ion"], h["hop_id"])
        b = bands[key]
        if isinstance(b, Exception):
            rows[key] = result_row(h, st, error=f"{type(b).__name__}: {b}")
            log.warning("%s %s: band not rebuilt: %s", key[0], key[2], rows[key]["error"])
        else:
            tasks.append((key, b, st))
    multi_ion = run.shortlist["working_ion"].nunique() > 1
    if tasks:
        n_workers = workers or max(1, min(len(tasks), os.cpu_count() or 1))
        with dask_client(n_workers, scheduler, "cpu", synchronous=synchronous) as client:
            results = map_tasks(client, refine_task, tasks, f"refine ({st.potential})", progress)
        by_key = {k: h for k, h in zip(zip(selected["material_id"], selected["working_ion"], selected["hop_id"]),
                                       (r for _, r in selected.iterrows()))}
        for (key, _, _), res in zip(tasks, results):
            h = by_key[key]
            if isinstance(res, BaseException):
                rows[key] = result_row(h, st, error=f"{type(res).__name__}: {res}")
                log.warning("%s %s: refine failed: %s", key[0], key[2], res)
                continue
            neb: NebResult = res["result"]
            folder = hop_folder_name(key[0], key[2], key[1] if multi_ion else None)
            rel = f"{REFINED_DIR}/{folder}/{st.potential}.traj"
            write_images(neb.images, run.path / rel)
            rows[key] = result_row(h, st, neb, images_path=rel)
    new = pd.DataFrame([rows[k] for k in zip(selected["material_id"], selected["working_ion"], selected["hop_id"])],
                       columns=REFINED_COLUMNS)
    write_parquet_atomic(merge_refined(run.refined, new), run.path / REFINED_TABLE)
    return new


def settings_dict(settings: RefineSettings) -> dict[str, Any]:
    """The settings as a JSON-ready mapping."""
    return asdict(settings)
