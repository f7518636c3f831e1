"""NEB of one hop with a universal potential: fixed-cell end-point relaxation, IDPP images, NEB."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from screener.core.band import Band, migration_barrier
from screener.handoff.batching import batched_calculators, single_calculator
from screener.handoff.neb_io import idpp_refine, linear_images, structure_to_atoms
from screener.handoff.potentials import load_potential, resolve
from screener.handoff.symmetry import MirroredImages, carry, same_under_swap, swap_mapping, symmetrize_band

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

    from screener.handoff.batching import ImageEvaluator


#: The optimisers settings may name (ASE classes).
OPTIMIZERS = ("bfgs", "bfgs-linesearch", "fire")

#: ASE NEB methods.
NEB_METHODS = ("eb", "improvedtangent", "aseneb", "spline", "string")


@dataclass(frozen=True)
class RefineSettings:
    """Settings of one NEB refinement; the defaults are the published MLIP-NEB protocol.

    The defaults follow the benchmark of universal potentials on the literature barrier set
    (Bheemaguli, Xiao & Sai Gautam, Digital Discovery 2026; code and per-entry results at
    github.com/sai-mat-group/mlips-migration-barriers): end points relaxed at fixed cell with
    ASE's BFGS line search to 0.05 eV/Å (at most 1000 steps), IDPP images, a plain NEB (ASE's
    ``method="eb"``, spring 5 eV/Å², no climbing image) relaxed with BFGS to 0.05 eV/Å (at most 1000
    steps), 3 intermediate images as in their CHGNet notebook (their stored results use 7). :meth:`legacy` gives screener's
    settings before 0.4 (FIRE, 5 images, 0.1 eV/Å, climbing image, spring 0.1), for comparison.

    Attributes:
        potential: a name of :data:`~screener.handoff.potentials.POTENTIALS`; an alias is
            replaced by the name it stands for (``sevenn`` -> ``7net-0``), so that results of one
            potential are recorded under one name.
        n_intermediate: images between the end points.
        fmax: force convergence of the end-point relaxations and of the NEB (eV/Å).
        relax_steps: most optimiser steps per end-point relaxation.
        neb_steps: most optimiser steps of the NEB.
        spring: NEB spring constant (eV/Å²).
        climb: climbing image on.
        method: ASE NEB method (``eb``, ``improvedtangent``, ``aseneb``).
        relax_optimizer: ``bfgs-linesearch`` (ASE's QuasiNewton), ``bfgs`` or ``fire``.
        neb_optimizer: ``bfgs`` or ``fire``.
        batched: evaluate all moving images in one call where the potential allows; ``None``
            (default): on a GPU only, as the evaluator's own ``device`` says where it has one, else
            ``device`` (on a CPU one call of 3 images of 111 atoms took 1.27x as long as 3 calls
            of one, CHGNet, one thread).
        symmetry: where a symmetry of the crystal swaps the hop's two sites, start the final
            end point's relaxation from the image of the relaxed initial one (it then converges
            at its first evaluation) and, where its energy and forces are the initial one's
            carried by the operation, map the energies and forces of the second half of the NEB
            images from their partners in the first (1 of 3 images with the defaults; see
            :mod:`screener.handoff.symmetry`). Off for ``relax_steps=0``.
        device: ``cpu`` or ``cuda``.
        threads: torch threads per task (None: torch's default).
    """

    potential: str = "chgnet"
    n_intermediate: int = 3
    fmax: float = 0.05
    relax_steps: int = 1000
    neb_steps: int = 1000
    spring: float = 5.0
    climb: bool = False
    method: str = "eb"
    relax_optimizer: str = "bfgs-linesearch"
    neb_optimizer: str = "bfgs"
    batched: bool | None = None
    symmetry: bool = True
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        # PotentialNotInstalledError (a ScreenerError) for an unknown name
        object.__setattr__(self, "potential", resolve(self.potential).name)
        if self.n_intermediate < 1:
            raise ValueError(f"need at least one intermediate image, got {self.n_intermediate}")
        if not (self.fmax > 0):
            raise ValueError(f"fmax must be positive, got {self.fmax}")
        if self.relax_steps < 0 or self.neb_steps < 1:
            raise ValueError("relax_steps must be >= 0 and neb_steps >= 1")
        if self.relax_optimizer not in OPTIMIZERS or self.neb_optimizer not in ("bfgs", "fire"):
            raise ValueError(f"optimisers: relax one of {OPTIMIZERS}, NEB bfgs or fire")
        if self.method not in NEB_METHODS or not (self.spring > 0):
            raise ValueError(f"NEB method must be one of {NEB_METHODS} and the spring positive")

    @classmethod
    def legacy(cls, **changes: Any) -> RefineSettings:
        """screener's settings before 0.4: FIRE, 5 images, 0.1 eV/Å, climbing image, spring 0.1."""
        base = dict(n_intermediate=5, fmax=0.1, relax_steps=200, neb_steps=200, spring=0.1, climb=True,
                    method="improvedtangent", relax_optimizer="fire", neb_optimizer="fire", batched=False,
                    symmetry=False)
        return cls(**{**base, **changes})


@dataclass
class RelaxResult:
    """A fixed-cell relaxation.

    Attributes:
        atoms: the relaxed atoms (with a single-point calculator holding energy and forces).
        energy_eV: final energy.
        max_force_eV_A: largest atomic force at the end.
        steps: optimiser steps taken.
        converged: ``max_force_eV_A <= fmax``.
        start_energy_eV: energy before relaxing (NaN when unknown).
        from_symmetry: started from the symmetric image of the other end point's relaxation.
    """

    atoms: Atoms
    energy_eV: float
    max_force_eV_A: float
    steps: int
    converged: bool
    start_energy_eV: float = float("nan")
    from_symmetry: bool = False


def _max_force(forces: np.ndarray) -> float:
    return float(np.sqrt((np.asarray(forces) ** 2).sum(axis=1)).max()) if len(forces) else 0.0


def _freeze(atoms: Atoms) -> Atoms:
    """A copy carrying its current energy and forces in a single-point calculator."""
    from ase.calculators.singlepoint import SinglePointCalculator

    e, f = atoms.get_potential_energy(), atoms.get_forces()
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=float(e), forces=np.array(f))
    return out


#: ``on_step(phase, step, max_steps)`` after every optimiser step: phase is ``relax initial``,
#: ``relax final`` or ``NEB``.
StepCallback = Callable[[str, int, int], None]


def _report_steps(opt: Any, on_step: StepCallback | None, phase: str, steps: int) -> None:
    if on_step is not None:
        opt.attach(lambda: on_step(phase, int(opt.nsteps), steps), interval=1)


def _optimizer(name: str) -> type:
    from ase.optimize import BFGS, FIRE, BFGSLineSearch

    return {"bfgs": BFGS, "bfgs-linesearch": BFGSLineSearch, "fire": FIRE}[name]


def relax_fixed_cell(atoms: Atoms, calc: Calculator, fmax: float = 0.05, steps: int = 1000,
                     on_step: StepCallback | None = None, phase: str = "relax",
                     optimizer: str = "bfgs-linesearch") -> RelaxResult:
    """Relax atomic positions at fixed cell (``atoms`` is not modified)."""
    a = atoms.copy()
    a.calc = calc
    start = float(a.get_potential_energy())  # the optimiser's first evaluation, cached
    n = 0
    if steps > 0:
        with _optimizer(optimizer)(a, logfile=None) as opt:
            _report_steps(opt, on_step, phase, steps)
            opt.run(fmax=fmax, steps=steps)
            n = int(opt.nsteps)
    frozen = _freeze(a)
    mf = _max_force(frozen.get_forces())
    return RelaxResult(frozen, float(frozen.get_potential_energy()), mf, n, mf <= fmax, start)


@dataclass
class NebResult:
    """A NEB refinement of one hop.

    Attributes:
        images: every image, end points included, each with a single-point calculator.
        energies_eV: energy of each image.
        initial: the relaxed initial end point.
        final: the relaxed final end point.
        max_force_eV_A: NEB residual force at the end.
        steps: NEB optimiser steps taken.
        converged: NEB and both end points converged.
        ion_shift_A: how far the migrating ion (atom 0) moved while relaxing each end point.
        seconds: wall time.
        evaluations: structures the potential evaluated (end points and images; the cost of the
            hop in potential calls, whatever the machine).
        mirrored: image results taken from a partner image by symmetry instead.
    """

    images: list[Atoms]
    energies_eV: list[float]
    initial: RelaxResult
    final: RelaxResult
    max_force_eV_A: float
    steps: int
    converged: bool
    ion_shift_A: tuple[float, float]
    seconds: float
    evaluations: int = 0
    mirrored: int = 0

    @property
    def em_eV(self) -> float:
        """The barrier: highest minus lowest image energy (:func:`~screener.core.band.migration_barrier`)."""
        return migration_barrier(self.energies_eV)

    @property
    def em_forward_eV(self) -> float:
        """Forward barrier, ``max(energies) - energies[0]``."""
        return float(max(self.energies_eV) - self.energies_eV[0])

    @property
    def em_reverse_eV(self) -> float:
        """Reverse barrier, ``max(energies) - energies[-1]``."""
        return float(max(self.energies_eV) - self.energies_eV[-1])


def neb_refine(initial: Atoms, final: Atoms, settings: RefineSettings | None = None,
               on_step: StepCallback | None = None, evaluator: ImageEvaluator | None = None) -> NebResult:
    """Relax both end points, then run a NEB between them.

    Args:
        initial: host plus the ion at its initial site (ion first).
        final: the same atoms with the ion at its final site.
        settings: potential, image count, convergence and step bounds.
        on_step: called after every optimiser step (progress bars).
        evaluator: energies and forces to use instead of ``settings.potential`` (any
            :class:`~screener.handoff.batching.ImageEvaluator`, e.g. a
            :class:`~screener.handoff.batching.CalculatorEvaluator` around your own calculator).

    Returns:
        The relaxed images, energies and barrier.
    """
    st = settings or RefineSettings()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # CHGNet's own harmless warning on every evaluation (a tensor->scalar conversion)
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
        return _neb_refine(initial, final, st, t0, on_step, evaluator)


def _neb_refine(initial: Atoms, final: Atoms, st: RefineSettings, t0: float,
                on_step: StepCallback | None = None, evaluator: ImageEvaluator | None = None) -> NebResult:
    from ase.mep.neb import NEB

    if st.threads:
        import torch

        torch.set_num_threads(int(st.threads))
    evaluator = evaluator or load_potential(st.potential, st.device)
    # The batching default follows where the evaluator runs: a user's evaluator on a GPU batches
    # even when the settings keep the default device="cpu".
    on_gpu = not str(getattr(evaluator, "device", None) or st.device).startswith("cpu")
    evaluator = _Counting(evaluator)
    one = single_calculator(evaluator)
    r0 = relax_fixed_cell(initial, one, st.fmax, st.relax_steps, on_step, "relax initial", st.relax_optimizer)
    swap = swap_mapping(initial, final) if st.symmetry and st.relax_steps > 0 else None
    if swap is None:
        r1 = relax_fixed_cell(final, one, st.fmax, st.relax_steps, on_step, "relax final", st.relax_optimizer)
    else:
        # The unrelaxed final end point is the image of the unrelaxed initial one: same start energy.
        r1 = relax_fixed_cell(carry(swap, r0.atoms, final), one, st.fmax, st.relax_steps, on_step,
                              "relax final", st.relax_optimizer)
        r1.start_energy_eV = r0.start_energy_eV
        r1.from_symmetry = True
    shifts = (float(np.linalg.norm(_mic_shift(initial, r0.atoms))),
              float(np.linalg.norm(_mic_shift(final, r1.atoms))))
    images = idpp_refine(linear_images(r0.atoms, r1.atoms, st.n_intermediate))
    images[0], images[-1] = r0.atoms, r1.atoms  # fixed end points: their energies are known
    # The band is symmetric when the carried end point needed no step and the potential agrees
    # (same energy, forces carried by the operation); else every image is evaluated.
    symmetric = swap is not None and r1.steps == 0 and same_under_swap(swap, r0.atoms, r1.atoms)
    if symmetric:
        symmetrize_band(swap, images)
    moving = images[1:-1]
    batch = evaluator.batched and (st.batched if st.batched is not None else on_gpu)
    mirror = MirroredImages(evaluator, swap, moving, batch) if symmetric else None
    if mirror is not None:  # the second half of the images mapped from their partners
        calcs = batched_calculators(mirror, moving)
    elif batch:
        calcs = batched_calculators(evaluator, moving)
    else:
        calcs = [single_calculator(evaluator) for _ in moving]
    for im, calc in zip(moving, calcs):
        im.calc = calc
    neb = NEB(images, k=st.spring, climb=st.climb, method=st.method)
    with _optimizer(st.neb_optimizer)(neb, logfile=None) as opt:
        _report_steps(opt, on_step, "NEB", st.neb_steps)
        opt.run(fmax=st.fmax, steps=st.neb_steps)
        steps = int(opt.nsteps)
    # The NEB force (spring + perpendicular true force; climbing image included) that the
    # optimiser converges; ASE's get_residual() leaves the climbing image out.
    residual = _max_force(neb.get_forces())
    frozen = [_freeze(im) for im in images]
    energies = [float(im.get_potential_energy()) for im in frozen]
    return NebResult(
        images=frozen, energies_eV=energies, initial=r0, final=r1, max_force_eV_A=residual, steps=steps,
        converged=bool(residual <= st.fmax and r0.converged and r1.converged),
        ion_shift_A=shifts,
        seconds=time.perf_counter() - t0,
        evaluations=evaluator.images,
        mirrored=mirror.mirrored if mirror is not None else 0,
    )


class _Counting:
    """An :class:`ImageEvaluator` that counts the structures it evaluates."""

    def __init__(self, evaluator: ImageEvaluator):
        self.evaluator = evaluator
        self.batched = evaluator.batched
        self.images = 0

    def evaluate(self, images: list[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        self.images += len(images)
        return self.evaluator.evaluate(images)


def _mic_shift(before: Atoms, after: Atoms, index: int = 0) -> np.ndarray:
    """Minimum-image displacement of one atom between two configurations of one cell."""
    from ase.geometry import find_mic

    d = after.positions[index] - before.positions[index]
    vec, _ = find_mic(d[None, :], before.cell, pbc=True)
    return vec[0]


#: A host atom of the ion's element this close (Å) to an end point is that site listed twice.
DUPLICATE_TOL_A = 0.5


def band_endpoints(band: Band) -> tuple[Atoms, Atoms]:
    """The band's two end points as ASE atoms (ion first), without host copies of the ion on either site.

    Some literature bands list the final site in the host as well; left in, the final end point
    would hold two atoms on one site. Such copies are removed from both end points alike.
    """
    s = band.structure
    n = band.n_images
    ion = s[0].species_string
    drop = set()
    for k in (0, n - 1):
        for i in range(n, len(s)):
            if s[i].species_string == ion and s.get_distance(k, i) < DUPLICATE_TOL_A:
                drop.add(i)
    from pymatgen.core import Structure

    host = [s[i] for i in range(n, len(s)) if i not in drop]
    initial, final = (structure_to_atoms(Structure.from_sites([s[k], *host])) for k in (0, n - 1))
    return initial, final


def refine_band(band: Band, settings: RefineSettings | None = None,
                on_step: StepCallback | None = None, evaluator: ImageEvaluator | None = None) -> NebResult:
    """:func:`neb_refine` between a band's end points (:func:`band_endpoints`)."""
    initial, final = band_endpoints(band)
    return neb_refine(initial, final, settings, on_step, evaluator)


def settings_dict(settings: RefineSettings) -> dict[str, Any]:
    """The settings as a JSON-ready mapping."""
    return asdict(settings)
