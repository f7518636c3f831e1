"""Energies and forces of many images in one call, and the ASE calculators that share that call.

An :class:`ImageEvaluator` takes a list of ASE atoms and returns their energies (eV) and forces
(eV/Å). :class:`CHGNetEvaluator` and :class:`SevenNetEvaluator` put every image into one batched
graph (one forward and backward pass for the whole band, which is where a GPU gains);
:class:`CalculatorEvaluator` wraps any ASE calculator and evaluates the images one at a time.

:func:`batched_calculators` gives each NEB image its own light calculator; the first image asked
for its forces evaluates every image whose positions changed in one call, the others read their
share. ASE's NEB asks the images in turn after moving them all, so each NEB step is one batched
evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator


class ImageEvaluator(Protocol):
    """Energies and forces of a list of images."""

    batched: bool

    def evaluate(self, images: list[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Energies (eV, one per image) and forces (eV/Å, one array per image)."""
        ...


class CHGNetEvaluator:
    """CHGNet, all images in one batched graph (``CHGNet.predict_structure`` on the list)."""

    batched = True

    def __init__(self, model: Any, device: str = "cpu"):
        self.model = model
        self.device = device

    def evaluate(self, images: list[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        """See :class:`ImageEvaluator`."""
        from pymatgen.io.ase import AseAtomsAdaptor

        structures = [AseAtomsAdaptor.get_structure(a) for a in images]
        preds = self.model.predict_structure(structures, task="ef", batch_size=max(1, len(structures)))
        if isinstance(preds, dict):
            preds = [preds]
        factor = [len(s) if self.model.is_intensive else 1 for s in structures]
        energies = np.array([float(p["e"]) * f for p, f in zip(preds, factor)])
        return energies, [np.asarray(p["f"], dtype=float) for p in preds]


class SevenNetEvaluator:
    """A SevenNet model, all images collated into one graph batch (as in its training)."""

    batched = True

    def __init__(self, calculator: Any):
        self.calculator = calculator  # also the single-image fallback
        self.model = calculator.model
        self.cutoff = float(calculator.cutoff)
        self.device = calculator.device
        self.modal = getattr(calculator, "modal", None)

    def evaluate(self, images: list[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        """See :class:`ImageEvaluator`."""
        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.loader.dataloader import Collater

        data = []
        for a in images:
            d = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, self.cutoff, with_shift=False))
            if self.modal:
                d[KEY.DATA_MODALITY] = self.modal
            data.append(d)
        batch = Collater([], follow_batch=None, exclude_keys=None)(data).to(self.device)
        self.model.set_is_batch_data(True)
        try:
            out = self.model(batch)
        finally:
            self.model.set_is_batch_data(False)
        energies = out[KEY.PRED_TOTAL_ENERGY].detach().cpu().numpy().reshape(-1).astype(float)
        forces = out[KEY.PRED_FORCE].detach().cpu().numpy().astype(float)
        split = np.cumsum([len(a) for a in images])[:-1]
        return energies, list(np.split(forces, split))


class CalculatorEvaluator:
    """Any ASE calculator, one image at a time (MACE, Orb, MatterSim, fairchem)."""

    batched = False

    def __init__(self, calculator: Calculator):
        self.calculator = calculator

    def evaluate(self, images: list[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        """See :class:`ImageEvaluator`."""
        energies, forces = [], []
        for a in images:
            b = a.copy()
            b.calc = self.calculator
            energies.append(float(b.get_potential_energy()))
            forces.append(np.array(b.get_forces(), dtype=float))
        return np.array(energies), forces


class _Batch:
    """The images of one NEB and their last evaluation."""

    def __init__(self, evaluator: ImageEvaluator, images: list[Atoms]):
        self.evaluator = evaluator
        self.images = images
        self.positions: list[np.ndarray | None] = [None] * len(images)
        self.energy = np.zeros(len(images))
        self.forces: list[np.ndarray | None] = [None] * len(images)
        self.calls = 0

    def results(self, index: int) -> tuple[float, np.ndarray]:
        """Energy and forces of image ``index``, evaluating every image that moved when it did."""
        stale = [i for i, im in enumerate(self.images)
                 if self.positions[i] is None or not np.array_equal(self.positions[i], im.positions)]
        if index in stale:
            energies, forces = self.evaluator.evaluate([self.images[i] for i in stale])
            self.calls += 1
            for i, e, f in zip(stale, energies, forces):
                self.positions[i] = self.images[i].positions.copy()
                self.energy[i], self.forces[i] = float(e), f
        return float(self.energy[index]), self.forces[index]


def batched_calculators(evaluator: ImageEvaluator, images: list[Atoms]) -> list[Calculator]:
    """One calculator per image in ``images``, all evaluated together by ``evaluator``.

    Returns:
        Calculators in the order of ``images``; attach each to its image.
    """
    from ase.calculators.calculator import Calculator, all_changes

    batch = _Batch(evaluator, images)

    class _ImageCalculator(Calculator):
        implemented_properties = ["energy", "free_energy", "forces"]  # noqa: RUF012

        def __init__(self, index: int):
            super().__init__()
            self.index = index
            self.batch = batch

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):  # noqa: ANN001
            super().calculate(atoms, properties, system_changes)
            e, f = batch.results(self.index)
            self.results = {"energy": e, "free_energy": e, "forces": np.array(f)}

    return [_ImageCalculator(i) for i in range(len(images))]


def single_calculator(evaluator: ImageEvaluator) -> Calculator:
    """An ASE calculator of one structure at a time through ``evaluator`` (end-point relaxations)."""
    from ase.calculators.calculator import Calculator, all_changes

    class _OneCalculator(Calculator):
        implemented_properties = ["energy", "free_energy", "forces"]  # noqa: RUF012

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):  # noqa: ANN001
            super().calculate(atoms, properties, system_changes)
            e, f = evaluator.evaluate([self.atoms])
            self.results = {"energy": float(e[0]), "free_energy": float(e[0]), "forces": np.array(f[0])}

    return _OneCalculator()
