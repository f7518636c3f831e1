"""All NEB images in one call: the batched evaluators agree with one image at a time."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from screener.handoff.batching import CalculatorEvaluator, batched_calculators
from screener.handoff.neb import RefineSettings, neb_refine
from screener.handoff.neb_io import structure_to_atoms
from screener.pathways.bands import build_band
from screener.pathways.config import PathwayConfig
from screener.pathways.search import find_pathways
from screener.sources.bundled import catalogue_dir
from screener.sources.files import read_structure


class CountingEMT(CalculatorEvaluator):
    """EMT with a call counter, claiming to batch (so the NEB hands it every image at once)."""

    batched = True

    def __init__(self):
        from ase.calculators.emt import EMT

        super().__init__(EMT())
        self.calls: list[int] = []

    def evaluate(self, images):
        self.calls.append(len(images))
        return super().evaluate(images)


def _cu_vacancy_hop():
    from ase.build import bulk

    host = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    ion = 0
    nn = int(np.argsort(host.get_distances(ion, range(len(host)), mic=True))[1])
    final = host.copy()
    final.positions[ion] = host.positions[nn]
    del host[nn]
    del final[nn]
    return host, final


def test_batched_neb_makes_one_call_per_step_and_matches_one_at_a_time():
    initial, final = _cu_vacancy_hop()
    st = RefineSettings(n_intermediate=3, fmax=0.05, relax_steps=50, neb_steps=60, batched=True,
                        symmetry=False)
    batched_eval = CountingEMT()
    a = neb_refine(initial, final, st, evaluator=batched_eval)
    single_eval = CountingEMT()
    b = neb_refine(initial, final, RefineSettings(**{**st.__dict__, "batched": False}), evaluator=single_eval)
    assert a.converged and b.converged
    assert a.em_eV == pytest.approx(b.em_eV, abs=1e-6)
    assert 0.3 < a.em_eV < 1.5  # EMT's Cu vacancy hop
    neb_calls = [n for n in batched_eval.calls if n > 1]
    assert neb_calls and set(neb_calls) == {3}  # every NEB step: the 3 moving images together
    assert max(single_eval.calls) == 1
    assert len(neb_calls) <= a.steps + 2


@pytest.mark.parametrize(("device", "batches"), [("cuda", True), ("cuda:1", True), ("cpu", False)])
def test_by_default_an_evaluator_batches_where_it_runs_on_a_gpu(device, batches):
    initial, final = _cu_vacancy_hop()
    ev = CountingEMT()
    ev.device = device  # a user's evaluator says where it runs; the settings keep device="cpu"
    st = RefineSettings(n_intermediate=3, fmax=0.05, relax_steps=50, neb_steps=60, symmetry=False)
    assert st.batched is None and st.device == "cpu"
    neb_refine(initial, final, st, evaluator=ev)
    assert (max(ev.calls) == 3) is batches


def test_images_that_did_not_move_are_not_evaluated_again():
    initial, final = _cu_vacancy_hop()
    images = [initial.copy() for _ in range(3)]
    ev = CountingEMT()
    calcs = batched_calculators(ev, images)
    for im, c in zip(images, calcs):
        im.calc = c
    e0 = [im.get_potential_energy() for im in images]
    assert ev.calls == [3]
    images[1].positions[0] += 0.05
    e1 = [im.get_potential_energy() for im in images]
    assert ev.calls == [3, 1] and e1[0] == e0[0] and e1[1] != e0[1]


def _lfp_images(n: int = 3):
    pw = find_pathways(read_structure(catalogue_dir() / "LiFePO4.cif"), "Li")
    hop = min((h for h in pw.hops if h.limit == "vacancy"), key=lambda h: h.length_A)
    band = build_band(pw, hop, PathwayConfig(min_width=6.0))
    return [structure_to_atoms(band.endpoint(i)) for i in range(n)]


def _reference_calculator(name: str, evaluator):
    """The potential's own ASE calculator, one structure per call (the independent reference)."""
    if name == "chgnet":
        from chgnet.model.dynamics import CHGNetCalculator

        return CHGNetCalculator(model=evaluator.model, use_device="cpu")
    return evaluator.calculator  # SevenNet's SevenNetCalculator on the same model


@pytest.mark.parametrize("name, module, tol", [("chgnet", "chgnet", 2e-4), ("7net-0", "sevenn", 1e-3)])
def test_batched_call_equals_the_potentials_own_calculator(name, module, tol):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed")
    from screener.handoff.potentials import load_potential

    ev = load_potential(name)
    images = _lfp_images()
    e, f = ev.evaluate(images)
    calc = _reference_calculator(name, ev)
    for im, ei, fi in zip(images, e, f):
        a = im.copy()
        a.calc = calc
        assert ei == pytest.approx(a.get_potential_energy(), abs=tol)
        np.testing.assert_allclose(fi, a.get_forces(), atol=tol)
    assert len(set(np.round(e, 4))) == len(images)  # different images, different energies
