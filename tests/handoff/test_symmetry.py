"""One relaxation for two end points where a symmetry of the crystal swaps the hop's sites."""

from __future__ import annotations

import numpy as np
import pytest

from screener.handoff.neb import RefineSettings, neb_refine, relax_fixed_cell
from screener.handoff.symmetry import carry, swap_mapping
from tests.handoff.test_batching import CountingEMT, _cu_vacancy_hop


def test_the_relaxed_final_end_point_is_the_image_of_the_relaxed_initial_one():
    initial, final = _cu_vacancy_hop()
    assert swap_mapping(initial, final) is not None
    ev = CountingEMT()
    from screener.handoff.batching import single_calculator

    r0 = relax_fixed_cell(initial, single_calculator(ev), fmax=0.01, steps=200)
    r1 = relax_fixed_cell(final, single_calculator(CountingEMT()), fmax=0.01, steps=200)
    image = carry(swap_mapping(initial, final), r0.atoms, final)
    assert image.get_chemical_symbols() == final.get_chemical_symbols()
    # the image is the final end point's own relaxed state: same energy, no force, same place
    image.calc = single_calculator(CountingEMT())
    assert image.get_potential_energy() == pytest.approx(r1.energy_eV, abs=2e-3)
    assert np.abs(image.get_forces()).max() < 0.02
    d = image.positions - r1.atoms.positions
    from ase.geometry import find_mic

    assert find_mic(d, image.cell)[1].max() < 0.02


def test_no_swap_when_the_sites_are_not_equivalent():
    initial, final = _cu_vacancy_hop()
    final = final.copy()
    final.positions[0] += [0.3, 0.1, 0.0]  # the final site is off the lattice: no operation swaps them
    assert swap_mapping(initial, final) is None


def test_neb_with_a_symmetric_final_end_point_saves_its_relaxation():
    initial, final = _cu_vacancy_hop()
    st = RefineSettings(n_intermediate=3, fmax=0.05, relax_steps=50, neb_steps=60, batched=False)
    sym_eval, full_eval = CountingEMT(), CountingEMT()
    a = neb_refine(initial, final, st, evaluator=sym_eval)
    b = neb_refine(initial, final, RefineSettings(**{**st.__dict__, "symmetry": False}),
                   evaluator=full_eval)
    assert a.final.from_symmetry and not b.final.from_symmetry
    assert a.final.steps == 0 and a.converged and b.converged
    assert a.final.start_energy_eV == pytest.approx(a.initial.start_energy_eV)
    assert a.em_eV == pytest.approx(b.em_eV, abs=5e-3)
    assert a.energies_eV[-1] == pytest.approx(a.energies_eV[0], abs=1e-3)  # equivalent end points
    assert len(sym_eval.calls) < len(full_eval.calls)
    assert a.evaluations == sum(sym_eval.calls) < b.evaluations == sum(full_eval.calls)
    # every NEB force call (the start and each step) mapped one of the 3 images from its partner
    assert a.mirrored == a.steps + 1 and b.mirrored == 0


def test_no_mapping_where_the_potential_breaks_the_symmetry():
    from ase.calculators.emt import EMT

    from screener.handoff.batching import CalculatorEvaluator

    class Tilted(CalculatorEvaluator):
        """EMT plus a small force on atom 0 along x: the operation no longer carries the forces."""

        def __init__(self):
            super().__init__(EMT())

        def evaluate(self, images):
            e, f = super().evaluate(images)
            for fa in f:
                fa[0, 0] += 0.02  # below fmax: the end points still count as relaxed
            return e, f

    initial, final = _cu_vacancy_hop()
    st = RefineSettings(n_intermediate=3, fmax=0.05, relax_steps=50, neb_steps=60)
    res = neb_refine(initial, final, st, evaluator=Tilted())
    assert res.final.from_symmetry and res.mirrored == 0  # started from the image, nothing mapped
    assert RefineSettings(relax_steps=0).symmetry  # the setting stays; the NEB skips it (no relaxation)
    unrelaxed = neb_refine(initial, final, RefineSettings(n_intermediate=3, relax_steps=0, neb_steps=5),
                           evaluator=CountingEMT())
    assert not unrelaxed.final.from_symmetry and unrelaxed.mirrored == 0


def _zincblende_hop():
    """A Cu vacancy hop in zincblende AlCu (no inversion; a primitive, non-orthogonal cell) whose
    swapping operation has a rotation that is not symmetric in fractional coordinates."""
    from ase.build import bulk

    crystal = bulk("AlCu", "zincblende", a=5.2) * (3, 3, 3)
    i, j = 1, 13  # two nearest Cu sites
    order = [i] + [k for k in range(len(crystal)) if k not in (i, j)]
    initial = crystal[order]
    final = initial.copy()
    final.positions[0] = crystal.positions[j]
    return initial, final


def test_mirrored_images_get_the_energy_and_forces_of_their_own_evaluation():
    from ase.calculators.emt import EMT

    from screener.handoff.batching import single_calculator
    from screener.handoff.neb_io import linear_images
    from screener.handoff.symmetry import MirroredImages

    initial, final = _zincblende_hop()
    swap = swap_mapping(initial, final)
    assert swap is not None and not np.allclose(swap[0], swap[0].T)  # R and R.T differ
    r0 = relax_fixed_cell(initial, single_calculator(CountingEMT()), fmax=0.01, steps=200)
    band = linear_images(r0.atoms, carry(swap, r0.atoms, final), 5)[1:-1]
    band[0].positions[3] += [0.05, -0.02, 0.01]  # break the symmetry of one pair (images 0 and 4)
    inner = CountingEMT()
    mirrored = MirroredImages(inner, swap, band)
    energies, forces = mirrored.evaluate(band)
    assert mirrored.mirrored == 1 and mirrored.evaluations == 4  # image 3 from image 1 only
    for im, e, f in zip(band, energies, forces):
        a = im.copy()
        a.calc = EMT()
        assert e == pytest.approx(a.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(f, a.get_forces(), atol=1e-8)
    assert np.abs(forces[3]).max() > 0.05  # the mapped forces are not trivially zero
