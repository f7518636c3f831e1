"""``screener refine``: NEB with a universal ML potential as a second opinion."""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from screener.cli.main import main
from screener.handoff.combine import load_combination
from screener.handoff.neb import NebResult, RefineSettings, RelaxResult
from screener.handoff.potentials import PotentialNotInstalledError, check_potential
from screener.handoff.refine import merge_refined, result_row, write_images
from screener.handoff.refined_table import DISAGREEMENT_EV, REFINED_COLUMNS, current_rows
from screener.sources.bundled import catalogue_dir

HAVE_CHGNET = importlib.util.find_spec("chgnet") is not None


@pytest.fixture(scope="module")
def lfp_run(tmp_path_factory) -> tuple[Path, Path]:
    """A run on the bundled olivine LiFePO4 (material id ``LiFePO4.cif``)."""
    from screener.screening.run import screen

    hosts = tmp_path_factory.mktemp("hosts")
    shutil.copy(catalogue_dir() / "LiFePO4.cif", hosts / "LiFePO4.cif")
    out = tmp_path_factory.mktemp("run") / "run"
    res = screen("Li", str(hosts), out=out, synchronous=True, threshold=10.0)
    assert len(res.shortlist) == 1
    return out, hosts


def _fake_result(em: float, energies: list[float] | None = None) -> NebResult:
    from ase import Atoms

    a = Atoms("Li", cell=[3, 3, 3], pbc=True)
    r = RelaxResult(a, -1.0, 0.05, 3, True)
    return NebResult(images=[a, a, a], energies_eV=energies or [-1.0, -1.0 + em, -1.0],
                     initial=r, final=r, max_force_eV_A=0.08, steps=10, converged=True, ion_shift_A=(0.0, 0.0),
                     seconds=1.0)


def test_neb_barrier_is_highest_minus_lowest_image():
    # final end point 0.3 eV below the initial one: the barrier is counted from the lowest point
    res = _fake_result(0.0, energies=[-1.0, -0.6, -1.3])
    assert res.em_eV == pytest.approx(0.7)
    assert res.em_forward_eV == pytest.approx(0.4) and res.em_reverse_eV == pytest.approx(0.7)
    hop = pd.Series({"material_id": "m", "working_ion": "Li", "hop_id": "h1", "limit": "vacancy",
                     "predicted_em_eV": 0.5, "uncertainty_eV": 0.05})
    row = result_row(hop, RefineSettings(), res)
    assert row["neb_em_eV"] == pytest.approx(0.7) and row["neb_em_forward_eV"] == pytest.approx(0.4)
    assert row["delta_eV"] == pytest.approx(0.2)


def test_rows_of_an_earlier_screener_get_the_barrier_from_the_lowest_image():
    hop = pd.Series({"material_id": "m", "working_ion": "Li", "hop_id": "h1", "limit": "vacancy",
                     "predicted_em_eV": 0.5, "uncertainty_eV": 0.05})
    now = result_row(hop, RefineSettings(), _fake_result(0.0, energies=[-1.0, -0.6, -1.3]))
    # the same NEB as an earlier screener wrote it: the forward barrier, no forward column, no images file
    before = {**now, "neb_em_eV": 0.4, "delta_eV": -0.1, "refined_em_eV": 0.45, "images_path": ""}
    failed = {**before, "hop_id": "h2", "neb_em_eV": float("nan")}
    old = pd.DataFrame([before, failed]).drop(columns="neb_em_forward_eV")
    (up, kept) = current_rows(old).to_dict("records")
    assert up["neb_em_eV"] == pytest.approx(0.7) and up["neb_em_forward_eV"] == pytest.approx(0.4)
    assert up["delta_eV"] == pytest.approx(0.2) and up["refined_em_eV"] == pytest.approx(now["refined_em_eV"])
    assert up["disagreement"] == now["disagreement"]
    assert kept["hop_id"] == "h2" and np.isnan(kept["neb_em_eV"])  # a failed NEB stays failed
    # a table written today is left as it is
    today = pd.DataFrame([{**now, "neb_em_eV": 0.4}], columns=REFINED_COLUMNS)
    assert current_rows(today)["neb_em_eV"].iloc[0] == pytest.approx(0.4)


def test_a_flag_written_by_the_raw_rule_is_read_by_todays():
    """Tables written on 2026-12-07 before the flag used NEB / scale carry the raw flag: it is read again."""
    hop = pd.Series({"material_id": "m", "working_ion": "Li", "hop_id": "h1", "limit": "vacancy",
                     "predicted_em_eV": 2.0, "uncertainty_eV": 0.3})
    st = RefineSettings()
    scale = load_combination(st.potential)[0].scale
    row = result_row(hop, st, _fake_result(2.0 * scale))  # a softened NEB that agrees
    assert row["disagreement"] is False
    raw = pd.DataFrame([{**row, "disagreement": True}, {**row, "hop_id": "h2", "neb_em_eV": float("nan"),
                                                        "disagreement": False}], columns=REFINED_COLUMNS)
    got = current_rows(raw)
    assert got["disagreement"].tolist() == [False, False]
    assert got["refined_em_eV"].iloc[0] == pytest.approx(row["refined_em_eV"])  # nothing else moves


def test_export_reads_an_earlier_screeners_row_with_the_barrier_of_its_images(tmp_path):
    from types import SimpleNamespace

    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from screener.handoff.export import read_refined_images

    images = []
    for x, e in zip((0.0, 0.5, 1.0), (-1.0, -0.6, -1.3)):  # the last end point 0.3 eV below the first
        a = Atoms("Li", positions=[[x, 0, 0]], cell=[3, 3, 3], pbc=True)
        a.calc = SinglePointCalculator(a, energy=e)
        images.append(a)
    write_images(images, tmp_path / "refined" / "m__h1" / "chgnet.traj")
    hop = pd.Series({"material_id": "m", "working_ion": "Li", "hop_id": "h1", "limit": "vacancy",
                     "predicted_em_eV": 0.5, "uncertainty_eV": 0.05})
    row = result_row(hop, RefineSettings(), _fake_result(0.0, energies=[-1.0, -0.6, -1.3]),
                     images_path="refined/m__h1/chgnet.traj")
    # as an earlier screener wrote it: the forward barrier, no forward column, no interior energies
    old = pd.DataFrame([{**row, "neb_em_eV": 0.4, "e_saddle_eV": -0.7}]).drop(columns="neb_em_forward_eV")
    got = read_refined_images(SimpleNamespace(refined=old, path=tmp_path), "m", "Li", "h1")
    assert got is not None and len(got[0]) == 3
    assert got[1]["neb_em_eV"] == pytest.approx(0.7)  # from the images file, not the stored top energy


def test_rows_flag_disagreement_and_upsert():
    hop = pd.Series({"material_id": "m", "working_ion": "Li", "hop_id": "h1", "limit": "vacancy",
                     "predicted_em_eV": 0.5, "uncertainty_eV": 0.05})
    st = RefineSettings()
    scale = load_combination(st.potential)[0].scale
    assert scale < 1  # the shipped CHGNet fit corrects for softening
    # The flag compares the prediction with the NEB barrier corrected for softening, NEB / scale.
    near = result_row(hop, st, _fake_result((0.5 + DISAGREEMENT_EV - 0.01) * scale))
    far = result_row(hop, st, _fake_result((0.5 + DISAGREEMENT_EV + 0.01) * scale))
    low = result_row(hop, st, _fake_result((0.5 - DISAGREEMENT_EV - 0.01) * scale))
    # a high barrier: the raw NEB is far below the prediction, the corrected one agrees
    soft = result_row(hop.copy().replace(0.5, 2.0), st, _fake_result(2.0 * scale))
    failed = result_row(hop, st, error="BandBuildError: no")
    assert set(near) == set(REFINED_COLUMNS)
    assert near["disagreement"] is False and far["disagreement"] is True and low["disagreement"] is True
    assert soft["disagreement"] is False and soft["delta_eV"] < -DISAGREEMENT_EV
    assert far["delta_eV"] == pytest.approx((0.5 + DISAGREEMENT_EV + 0.01) * scale - 0.5)
    assert math.isnan(failed["neb_em_eV"]) and failed["converged"] is False
    old = pd.DataFrame([near, {**near, "hop_id": "h2"}, {**near, "potential": "sevenn"}], columns=REFINED_COLUMNS)
    merged = merge_refined(old, pd.DataFrame([far], columns=REFINED_COLUMNS))
    assert len(merged) == 3  # h1/chgnet replaced, h2/chgnet and h1/sevenn kept
    assert merged.set_index(["hop_id", "potential"]).loc[("h1", "chgnet"), "disagreement"]


def test_a_failed_rerun_keeps_the_earlier_neb():
    hop = pd.Series({"material_id": "m", "working_ion": "Li", "hop_id": "h1", "limit": "vacancy",
                     "predicted_em_eV": 0.5, "uncertainty_eV": 0.05})
    st = RefineSettings()
    good = result_row(hop, st, _fake_result(0.6), images_path="refined/m__h1/chgnet.traj")
    failed_before = result_row(hop.copy().replace("h1", "h2"), st, error="MemoryError: out of memory")
    old = pd.DataFrame([good, failed_before], columns=REFINED_COLUMNS)
    new = pd.DataFrame([result_row(hop, st, error="RunDirError: source gone"),
                        result_row(hop.copy().replace("h1", "h2"), st, _fake_result(0.7))], columns=REFINED_COLUMNS)
    merged = merge_refined(old, new).set_index("hop_id")
    assert len(merged) == 2
    assert merged.loc["h1", "neb_em_eV"] == pytest.approx(0.6) and merged.loc["h1", "error"] == ""  # kept
    assert merged.loc["h1", "images_path"] == "refined/m__h1/chgnet.traj"
    assert merged.loc["h2", "neb_em_eV"] == pytest.approx(0.7)  # a failure is replaced by a success


def test_an_alias_is_recorded_under_the_potentials_name():
    assert RefineSettings(potential="sevenn").potential == "7net-0"
    assert RefineSettings.legacy(potential="mace").potential == "mace-mp-0"
    hop = pd.Series({"material_id": "m", "working_ion": "Li", "hop_id": "h1", "limit": "vacancy",
                     "predicted_em_eV": 0.5, "uncertainty_eV": 0.05})
    # a table that recorded SevenNet-0 under its old name, then under its name: one row, the later
    earlier = {**result_row(hop, RefineSettings(potential="7net-0"), _fake_result(0.6)), "potential": "sevenn"}
    later = result_row(hop, RefineSettings(potential="7net-0"), _fake_result(0.7))
    assert later["potential"] == "7net-0"
    table = current_rows(pd.DataFrame([earlier, later], columns=REFINED_COLUMNS))
    assert list(table["potential"]) == ["7net-0"] and table["neb_em_eV"].iloc[0] == pytest.approx(0.7)


def test_an_earlier_screeners_failed_row_gets_the_fast_prediction():
    hop = pd.Series({"material_id": "m", "working_ion": "Li", "hop_id": "h1", "limit": "vacancy",
                     "predicted_em_eV": 0.5, "uncertainty_eV": 0.05})
    ok = result_row(hop, RefineSettings(), _fake_result(0.6))
    failed = result_row(hop.copy().replace("h1", "h2"), RefineSettings(), error="BandBuildError: no")
    # as written before the combination: neither the forward column nor the refined ones
    gone = ["neb_em_forward_eV", "refined_em_eV", "refined_uncertainty_eV", "refined_status", "neb_weight"]
    old = pd.DataFrame([{**ok, "neb_em_eV": 0.6}, failed]).drop(columns=gone)
    up = current_rows(old).set_index("hop_id")
    assert up.loc["h2", "refined_em_eV"] == pytest.approx(0.5)  # the fast prediction, as refine gives today
    assert up.loc["h2", "refined_status"] == "fast model only (NEB failed: BandBuildError)"
    assert up.loc["h1", "refined_status"] == ok["refined_status"]
    assert up.loc["h1", "refined_em_eV"] == pytest.approx(ok["refined_em_eV"])


def test_missing_potential_is_a_clear_usage_error(lfp_run, monkeypatch, capsys, caplog):
    import dataclasses

    import screener.handoff.potentials as potentials

    spec = potentials.SPECS["7net-0"]
    monkeypatch.setitem(potentials.SPECS, "7net-0", dataclasses.replace(spec, module="no_such_module_sevenn_xyz"))
    with pytest.raises(PotentialNotInstalledError, match="pip install sevenn"):
        check_potential("sevenn")  # the old name of SevenNet-0
    rc = main(["refine", str(lfp_run[0]), "--potential", "sevenn", "--source", str(lfp_run[1]), "--quiet"])
    assert rc == 2
    assert "pip install sevenn" in caplog.text
    assert not (lfp_run[0] / "refined.parquet").exists()


def test_hops_asked_for_that_are_not_there_are_a_usage_error(lfp_run, caplog):
    rc = main(["refine", str(lfp_run[0]), "--hop", "no-such-hop", "--source", str(lfp_run[1]), "--quiet"])
    assert rc == 2
    assert "none of the hops asked for" in caplog.text
    assert not (lfp_run[0] / "refined.parquet").exists()


def test_weights_that_cannot_be_had_stop_refine_before_any_work(lfp_run, monkeypatch, caplog):
    """A potential that downloads its weights, on a machine without network: one clear error, exit 2."""
    import dataclasses

    import screener.handoff.potentials as potentials

    spec = potentials.SPECS["mace-mp-0"]
    monkeypatch.setitem(potentials.SPECS, "mace-mp-0", dataclasses.replace(spec, module="json"))  # "installed"

    def no_network(spec, device):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(potentials, "_load", no_network)
    with pytest.raises(potentials.PotentialWeightsError, match="mace-mp-0.*could not be loaded.*downloads its weights"):
        potentials.load_potential("mace-mp-0")
    rc = main(["refine", str(lfp_run[0]), "--potential", "mace-mp-0", "--source", str(lfp_run[1]), "--quiet"])
    assert rc == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "could not be loaded" in errors[0].getMessage()
    assert not (lfp_run[0] / "refined.parquet").exists()


def test_every_potential_name_resolves():
    from screener.handoff.potentials import POTENTIALS, SPECS, resolve

    assert {"chgnet", "7net-0", "7net-l3i5", "7net-mf-0", "mace-mp-0", "orb-v3", "mattersim", "uma-s-1"} <= set(SPECS)
    assert resolve("sevenn").name == "7net-0" and resolve("mace").name == "mace-mp-0"
    assert all(resolve(n).name in SPECS for n in POTENTIALS)
    assert {n for n, s in SPECS.items() if s.offline} == {"chgnet", "7net-0", "7net-l3i5", "7net-mf-0"}


def test_settings_are_validated():
    with pytest.raises(PotentialNotInstalledError, match="unknown potential"):
        RefineSettings(potential="no-such-potential")
    with pytest.raises(ValueError):
        RefineSettings(fmax=0)
    with pytest.raises(ValueError):
        RefineSettings(neb_optimizer="bfgs-linesearch")


def test_defaults_are_the_published_protocol():
    st, old = RefineSettings(), RefineSettings.legacy()
    assert (st.fmax, st.spring, st.climb, st.method, st.neb_optimizer, st.relax_optimizer) == (
        0.05, 5.0, False, "eb", "bfgs", "bfgs-linesearch")
    assert st.relax_steps == st.neb_steps == 1000 and st.batched is None and st.symmetry
    assert (old.fmax, old.climb, old.neb_optimizer, old.n_intermediate) == (0.1, True, "fire", 5)


@pytest.mark.skipif(not HAVE_CHGNET, reason="chgnet not installed (pip install 'screener[refine]')")
def test_refine_one_lifepo4_hop_with_chgnet(lfp_run, tmp_path, capsys):
    """A few optimiser steps on the shortest vacancy hop: the pipeline, not the converged barrier.

    The converged runs are in benchmarks/bench_refine.py.
    """
    from ase.io import read

    run_dir, hosts = lfp_run
    hops = pd.read_parquet(run_dir / "hops.parquet")
    hop = hops[hops["limit"] == "vacancy"].sort_values("length_A").iloc[0]
    args = ["refine", str(run_dir), "--top", "1", "--hop", hop["hop_id"], "--sync", "--threads", "1",
            "--images", "3", "--relax-steps", "3", "--neb-steps", "3", "--source", str(hosts), "--quiet"]
    rc = main(args)
    assert rc == 0
    capsys.readouterr()
    assert main(args) == 0  # run again: the hop is kept, not refined again
    assert "1 of 1 hops refined with chgnet (1 kept from an earlier refine" in capsys.readouterr().out
    ref = pd.read_parquet(run_dir / "refined.parquet")
    assert list(ref.columns) == REFINED_COLUMNS and len(ref) == 1
    r = ref.iloc[0]
    assert r["hop_id"] == hop["hop_id"] and r["potential"] == "chgnet" and r["error"] == ""
    assert np.isfinite(r["neb_em_eV"]) and r["predicted_em_eV"] == pytest.approx(hop["predicted_em_eV"])
    scale = load_combination("chgnet")[0].scale
    assert r["disagreement"] == (abs(r["neb_em_eV"] / scale - r["predicted_em_eV"]) > DISAGREEMENT_EV)
    # the combined barrier lies between the prediction and the NEB barrier, with an uncertainty
    lo, hi = sorted([r["predicted_em_eV"], r["neb_em_eV"]])
    assert lo - 1e-9 <= r["refined_em_eV"] <= hi + 1e-9 and r["refined_uncertainty_eV"] > 0
    assert r["refined_status"].startswith("combined (")
    assert r["initial_steps"] <= 3 and r["final_steps"] <= 3 and r["neb_steps"] <= 3
    assert np.isfinite(r["e_initial_eV"]) and r["initial_max_force_eV_A"] >= 0 and r["seconds"] > 0
    assert r["initial_ion_shift_A"] < 0.5  # the ion stays on its site while the end point relaxes
    images = read(run_dir / r["images_path"], index=":")
    assert len(images) == 5 and r["n_images"] == 5
    energies = [im.get_potential_energy() for im in images]
    assert r["neb_em_eV"] == pytest.approx(max(energies) - min(energies))
    assert r["neb_em_forward_eV"] == pytest.approx(max(energies) - energies[0])
    assert r["neb_em_reverse_eV"] == pytest.approx(max(energies) - energies[-1])
    # export now hands out the relaxed images
    out = tmp_path / "neb"
    assert main(["export", str(run_dir), "--top", "1", "--out", str(out), "--source", str(hosts),
                 "--idpp-steps", "0", "--images", "1", "--quiet"]) == 0
    man = pd.read_csv(out / "exported.csv").set_index("hop_id")
    assert man.loc[hop["hop_id"], "images_from"] == "refined:chgnet"
    assert man.loc[hop["hop_id"], "n_images"] == 5


@pytest.mark.skipif(not HAVE_CHGNET, reason="chgnet not installed (pip install 'screener[refine]')")
def test_an_interrupted_refine_keeps_its_finished_hops_and_goes_on_where_it_stopped(lfp_run, tmp_path,
                                                                                     monkeypatch):
    """Each hop's row is written when it ends; a rerun refines only what is missing (--redo: all)."""
    import screener.handoff.refine as refine_mod

    run_src, hosts = lfp_run
    run_dir = tmp_path / "run"
    shutil.copytree(run_src, run_dir, ignore=shutil.ignore_patterns("refined*"))
    done: list[str] = []

    def fake_task(key, band, st, on_step=None):  # a finished NEB for the first hop, then Ctrl-C
        if len(done) == 1 and st.neb_steps == 1000:
            raise KeyboardInterrupt
        done.append(key[2])
        return {"key": key, "result": _fake_result(0.4)}

    monkeypatch.setattr(refine_mod, "refine_task", fake_task)
    kw = dict(synchronous=True, source=str(hosts))
    with pytest.raises(KeyboardInterrupt):
        refine_mod.refine_run(run_dir, 1, RefineSettings(), **kw)
    first = done[0]
    kept = pd.read_parquet(run_dir / "refined.parquet")
    assert kept["hop_id"].tolist() == [first] and kept["neb_em_eV"].iloc[0] == pytest.approx(0.4)
    assert kept["refine_key"].iloc[0]

    monkeypatch.setattr(refine_mod, "refine_task", lambda key, band, st, on_step=None: (
        done.append(key[2]), {"key": key, "result": _fake_result(0.5)})[1])
    done.clear()
    table = refine_mod.refine_run(run_dir, 1, RefineSettings(), **kw)
    assert first not in done and len(done) == len(table) - 1 >= 1  # the rest, not the finished hop
    assert table.attrs["kept_hops"] == [first]
    assert table.set_index("hop_id").loc[first, "neb_em_eV"] == pytest.approx(0.4)
    assert len(pd.read_parquet(run_dir / "refined.parquet")) == len(table)
    done.clear()
    refine_mod.refine_run(run_dir, 1, RefineSettings(), **kw)
    assert done == []  # everything refined alike: nothing to run
    refine_mod.refine_run(run_dir, 1, RefineSettings(neb_steps=500), **kw)  # other settings: all again
    assert len(done) == len(table)
    done.clear()
    refine_mod.refine_run(run_dir, 1, RefineSettings(neb_steps=500), redo=True, **kw)
    assert len(done) == len(table)


def test_every_optimiser_step_is_reported():
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from screener.handoff.neb import relax_fixed_cell

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=1)
    seen = []
    res = relax_fixed_cell(atoms, EMT(), fmax=0.01, steps=50, on_step=lambda *a: seen.append(a), phase="relax initial")
    assert res.steps > 2 and len(seen) >= res.steps
    assert {p for p, _, _ in seen} == {"relax initial"} and {m for _, _, m in seen} == {50}
    assert [s for _, s, _ in seen] == sorted(s for _, s, _ in seen)


def test_band_endpoints_drop_host_copies_of_the_ion_on_an_end_site() -> None:
    """Some literature bands list the final site in the host too: neither end point holds two atoms there."""
    from pymatgen.core import Lattice, Structure

    from screener.core.band import Band
    from screener.handoff.neb import band_endpoints

    host = Structure(Lattice.cubic(6.0), ["O", "O", "Li"], [[0.5, 0.5, 0.5], [0.0, 0.5, 0.5], [0.8, 0.3, 0.3]])
    clean = Band.from_host(host, "Li", np.array([0.3, 0.3, 0.3]), np.array([0.6, 0.3, 0.3]))
    s = clean.structure.copy()
    s.append("Li", s.frac_coords[clean.n_images - 1] + 1e-3)  # the final site again, in the host
    for band in (clean, Band(s)):
        initial, final = band_endpoints(band)
        assert len(initial) == len(final) == 1 + len(host)  # the ion + the host, no copy
        assert initial.get_chemical_symbols().count("Li") == final.get_chemical_symbols().count("Li") == 2
        for atoms in (initial, final):
            d = atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)]
            assert d.min() > 0.5
        assert np.allclose(initial.get_scaled_positions()[0], [0.3, 0.3, 0.3])
        assert np.allclose(final.get_scaled_positions()[0], [0.6, 0.3, 0.3])
