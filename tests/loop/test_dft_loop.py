"""The loop back from DFT: predict a given hop, learn from NEB folders, suggest the next hops."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure
from pymatgen.io.vasp import Poscar

from screener.cli.main import main
from screener.core.band import structure_to_jarvis_dict
from screener.loop.neb_results import judge_neb
from screener.loop.suggest import suggest_hops
from screener.model.predictor import BandPredictor
from screener.model.registry import default_model_dir
from screener.pathways.bands import build_band
from screener.pathways.config import PathwayConfig
from screener.pathways.search import find_pathways
from screener.screening.rundir import RunData

OSZICAR_LINE = "   1 F= {e:.8E} E0= {e:.8E}  d E =-.100000E-02  mag=     0.0000\n"


@pytest.fixture(scope="module")
def endpoints(licoo2) -> tuple[Structure, Structure]:
    """The end points of LiCoO2's 2.82 Å in-plane vacancy hop in a small supercell (ion first)."""
    pw = find_pathways(licoo2, "Li", PathwayConfig(min_width=6.0))
    hop = next(h for h in pw.hops if h.limit == "vacancy")
    band = build_band(pw, hop)
    return band.endpoint(0), band.endpoint(-1)


def _write_neb(folder: Path, images: list[Structure], energies: list[float | None],
               converged: bool | None = True) -> Path:
    """A VASP NEB folder; ``converged``: the intermediate OUTCARs say so (None: no OUTCAR)."""
    for k, (s, e) in enumerate(zip(images, energies)):
        d = folder / f"{k:02d}"
        d.mkdir(parents=True, exist_ok=True)
        Poscar(s).write_file(d / "POSCAR")
        if e is not None:
            (d / "OSZICAR").write_text("       N       E                     dE             d eps       ncg\n"
                                       + OSZICAR_LINE.format(e=-400.0 + e))
        if converged is not None and 0 < k < len(images) - 1:
            (d / "OUTCAR").write_text(" vasp.6.4.2\n" + (" reached required accuracy - stopping structural energy "
                                                         "minimisation\n" if converged else ""))
    return folder


def _images(initial: Structure, final: Structure, n: int = 5) -> list[Structure]:
    return list(initial.interpolate(final, nimages=n - 1, interpolate_lattices=False, autosort_tol=0))


@pytest.fixture(scope="module")
def neb_folders(endpoints, tmp_path_factory) -> dict[str, Path]:
    ini, fin = endpoints
    root = tmp_path_factory.mktemp("nebs")
    images = _images(ini, fin)
    out = {"clean": _write_neb(root / "clean", images, [0.0, 0.5, 1.40, 0.5, 0.0]),
           "inverted": _write_neb(root / "inverted", images, [0.0, -0.4, 0.2, -0.4, 0.0]),
           "unfinished": _write_neb(root / "unfinished", images, [0.0, 0.3, None, 0.3, 0.0])}
    stretched = fin.copy()
    stretched.scale_lattice(fin.volume * 1.03)
    out["cells"] = _write_neb(root / "cells", [*images[:-1], stretched], [0.0, 0.2, 0.4, 0.2, 0.0])
    two = fin.copy()
    other = next(i for i, s in enumerate(two) if s.specie.symbol == "Li" and i > 0)
    two.translate_sites([other], [0.8, 0, 0], frac_coords=False)
    out["two_ions"] = _write_neb(root / "two_ions", [*images[:-1], two], [0.0, 0.2, 0.4, 0.2, 0.0])
    (root / "empty").mkdir()
    out["empty"] = root / "empty"
    out["stopped"] = _write_neb(root / "stopped", images, [0.0, 0.5, 1.40, 0.5, 0.0], converged=False)
    out["no_outcar"] = _write_neb(root / "no_outcar", images, [0.0, 0.5, 1.40, 0.5, 0.0], converged=None)
    return out


def test_each_neb_folder_is_classified_as_a_dft_user_would(neb_folders):
    clean = judge_neb(neb_folders["clean"])
    assert clean.status == "accepted" and clean.em_eV == pytest.approx(1.40) and clean.em_reverse_eV == pytest.approx(1.40)
    assert clean.working_ion == "Li" and clean.hop_length_A == pytest.approx(2.8156, abs=0.01)
    inverted = judge_neb(neb_folders["inverted"])
    assert inverted.status == "rejected" and "inverted" in inverted.reason
    # the barrier counts from the lowest image (0.2 - (-0.4)); the forward one from the first
    assert inverted.em_eV == pytest.approx(0.6) and inverted.em_forward_eV == pytest.approx(0.2)
    assert judge_neb(neb_folders["inverted"], accept_warnings=True).status == "accepted"
    unfinished = judge_neb(neb_folders["unfinished"])
    assert unfinished.status == "rejected" and "02" in unfinished.reason and unfinished.em_eV is None
    cells = judge_neb(neb_folders["cells"])
    assert cells.status == "rejected" and "cells differ" in cells.reason
    assert judge_neb(neb_folders["cells"], accept_warnings=True).status == "rejected"  # an error, not a warning
    two = judge_neb(neb_folders["two_ions"])
    assert two.status == "rejected" and "2 sites move" in two.reason
    # a NEB stopped before EDIFFG (wall time, NSW) teaches nothing; one without OUTCARs asks the user
    stopped = judge_neb(neb_folders["stopped"])
    assert stopped.status == "rejected" and "did not converge" in stopped.reason and "01" in stopped.reason
    assert judge_neb(neb_folders["stopped"], accept_warnings=True).status == "rejected"
    unchecked = judge_neb(neb_folders["no_outcar"])
    assert unchecked.status == "rejected" and "convergence not checked" in unchecked.reason
    assert judge_neb(neb_folders["no_outcar"], accept_warnings=True).status == "accepted"


def _ase_band(initial: Structure, final: Structure, energies: list[float], shift: float = 0.0) -> list:
    """ASE images with energies and forces (along the path only, plus ``shift`` eV/Å across it)."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for s, e in zip(_images(initial, final, len(energies)), energies):
        a = AseAtomsAdaptor.get_atoms(s)
        f = np.zeros((len(a), 3))
        f[:, 2] = shift
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        frames.append(a)
    return frames


def test_ase_trajectories_are_read_as_a_dft_user_would(endpoints, tmp_path):
    from ase.io import write

    from screener.handoff.refine import write_images
    from screener.loop.neb_results import NebReadError

    ini, fin = endpoints
    good = _ase_band(ini, fin, [0.0, 0.3, 0.8, 0.3, 0.0])
    write(tmp_path / "neb.traj", good)
    rec = judge_neb(tmp_path / "neb.traj")
    assert rec.status == "accepted" and rec.em_eV == pytest.approx(0.8)
    # an optimiser's trajectory, every image at every step: the last band, not the first guess
    steps = [_ase_band(ini, fin, [0.0, 1.0, 2.5, 1.0, 0.0]), _ase_band(ini, fin, [0.0, 0.6, 1.2, 0.6, 0.0]), good]
    write(tmp_path / "opt.traj", [a for band in steps for a in band])
    assert judge_neb(tmp_path / "opt.traj").em_eV == pytest.approx(0.8)
    # not converged: a force across the path
    write(tmp_path / "loose.traj", _ase_band(ini, fin, [0.0, 0.3, 0.8, 0.3, 0.0], shift=0.5))
    loose = judge_neb(tmp_path / "loose.traj")
    assert loose.status == "rejected" and "did not converge" in loose.reason
    # a NaN energy is an unfinished image, not a crash
    bad = _ase_band(ini, fin, [0.0, 0.3, float("nan"), 0.3, 0.0])
    write(tmp_path / "nan.traj", bad)
    nan = judge_neb(tmp_path / "nan.traj")
    assert nan.status == "rejected" and "did not finish" in nan.reason
    # what screener refine wrote is an ML potential's NEB: refused
    write_images(_ase_band(ini, fin, [0.0, 0.3, 0.8, 0.3, 0.0]), tmp_path / "refined" / "chgnet.traj", "chgnet")
    with pytest.raises(NebReadError, match="ML-potential NEB"):
        judge_neb(tmp_path / "refined" / "chgnet.traj")
    # a CONTCAR cut short by a killed VASP: unreadable, not a crash
    cut = _write_neb(tmp_path / "cut", _images(ini, fin), [0.0, 0.3, 0.8, 0.3, 0.0])
    text = (cut / "02" / "POSCAR").read_text().splitlines()
    (cut / "02" / "CONTCAR").write_text("\n".join(text[:9]) + "\n")
    with pytest.raises(NebReadError, match="cannot read a structure"):
        judge_neb(cut)


def test_learn_refits_and_the_new_model_predicts_the_learned_hop_closer(neb_folders, endpoints, tmp_path, capsys):
    folders = [str(neb_folders[k]) for k in ("clean", "inverted", "unfinished", "cells", "two_ions", "empty",
                                              "stopped")]
    out = tmp_path / "learned"
    # the clean folder given twice is learned once
    assert main(["learn", *folders, str(neb_folders["clean"]), "--out", str(out), "--json"]) == 3  # empty: unreadable
    report = json.loads(capsys.readouterr().out)
    status = {Path(f["folder"]).name: f["status"] for f in report["folders"]}
    assert status == {"clean": "accepted", "inverted": "rejected", "unfinished": "rejected", "cells": "rejected",
                      "two_ions": "rejected", "empty": "unreadable", "stopped": "rejected"}
    assert {Path(f["folder"]).name: f["em_eV"] for f in report["folders"]}["inverted"] == pytest.approx(0.6)
    meta = json.loads((out / "model.json").read_text())
    assert meta["version"].endswith("+learn1") and meta["learned"][0]["em_eV"] == pytest.approx(1.40)
    assert meta["n_train"] == json.loads((default_model_dir() / "model.json").read_text())["n_train"] + 1
    card = (out / "MODEL_CARD.md").read_text()
    assert "Learned from finished NEB" in card
    # the top says it is a learned model, before the base's sections that follow
    assert card.index("A learned model") < card.index("## Model") < card.index("## Cross-validation")
    assert "refit on 1 more DFT barriers (`screener learn`; 1 learned in all;" in card
    assert report["cv"]["trees_only_enlarged"]["n"] == report["cv"]["trees_only_base"]["n"] + 1
    from screener.core.band import Band

    band = Band.from_endpoints(*endpoints)
    before = BandPredictor.load(default_model_dir()).predict([band]).em[0]
    after = BandPredictor.load(out).predict([band]).em[0]
    assert abs(after - 1.40) < abs(before - 1.40) - 0.1
    # learning the same hop again on the new model adds nothing: refused, no model written (exit 3)
    assert main(["learn", str(neb_folders["clean"]), "--base", str(out), "--out", str(tmp_path / "again")]) == 3
    assert not (tmp_path / "again").exists()


def test_learn_never_deletes_a_folder(neb_folders, tmp_path, caplog):
    import shutil

    base = tmp_path / "models" / "base"
    shutil.copytree(default_model_dir(), base)
    before = sorted(p.name for p in base.iterdir())
    for out in (tmp_path / "models", base, base / "sub"):  # holds the base, is it, lies in it
        assert main(["learn", str(neb_folders["clean"]), "--base", str(base), "--out", str(out)]) == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["learn", str(neb_folders["clean"]), "--base", str(base), "--out", str(tmp_path / "mine")]) == 2
    assert "not empty" in caplog.text
    assert sorted(p.name for p in base.iterdir()) == before and (tmp_path / "mine" / "notes.txt").exists()
    (tmp_path / "empty_out").mkdir()  # an empty folder is fine
    assert main(["learn", str(neb_folders["clean"]), "--base", str(base), "--out", str(tmp_path / "empty_out")]) == 0
    assert (tmp_path / "empty_out" / "model.json").exists()
    assert not list(tmp_path.glob(".empty_out.tmp-*"))


def test_predict_matches_evaluate_and_reads_vasp6_files(endpoints, tmp_path, capsys):
    ini, fin = endpoints
    for name, s in (("POSCAR_ini", ini), ("CONTCAR_fin", fin)):
        text = Poscar(s).get_str().splitlines()
        symbols = text[5].split()  # VASP 6 writes POTCAR labels with hashes, and selective dynamics
        text[5] = " ".join(f"{e}_sv/5f8e{k}a2c" if e == "Li" else f"{e}/1b2c3d{k}" for k, e in enumerate(symbols))
        coords = text[8:]
        text = text[:7] + ["Selective dynamics"] + text[7:8] + [c + " T T T" for c in coords if c.strip()]
        (tmp_path / name).write_text("\n".join(text) + "\n")
    assert main(["predict", "--ini", str(tmp_path / "POSCAR_ini"), "--fin", str(tmp_path / "CONTCAR_fin"),
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == {"predicted_em_eV", "uncertainty_eV", "hop_length_A", "working_ion", "warnings"}
    assert got["working_ion"] == "Li" and got["hop_length_A"] == pytest.approx(2.8156, abs=0.01)
    data = tmp_path / "pair.json"
    data.write_text(json.dumps([{"jid": "x", "atoms_ini": structure_to_jarvis_dict(ini),
                                 "atoms_fin": structure_to_jarvis_dict(fin)}]))
    assert main(["evaluate", "--data", str(data), "--out", str(tmp_path / "p.csv")]) == 0
    row = pd.read_csv(tmp_path / "p.csv").iloc[0]
    assert got["predicted_em_eV"] == pytest.approx(row["predicted_em_eV"], abs=1e-6)
    assert got["uncertainty_eV"] == pytest.approx(row["uncertainty_eV"], abs=1e-6)


def test_predict_warns_when_two_ions_move_and_pairs_give_one_row_each(endpoints, tmp_path, capsys):
    ini, fin = endpoints
    two = fin.copy()
    other = next(i for i, s in enumerate(two) if s.specie.symbol == "Li" and i > 0)
    two.translate_sites([other], [0.7, 0, 0], frac_coords=False)
    ini.to(filename=str(tmp_path / "a.cif"))
    two.to(filename=str(tmp_path / "b.cif"))
    (tmp_path / "bad.cif").write_text("data_nothing\n")
    (tmp_path / "pairs.csv").write_text("ini,fin,ion\na.cif,b.cif,li\na.cif,bad.cif,\n")
    assert main(["predict", "--pairs", str(tmp_path / "pairs.csv"), "--json"]) == 3
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and rows[1]["error"] and rows[1]["predicted_em_eV"] is None
    assert any("2 sites move" in w for w in rows[0]["warnings"]) and rows[0]["working_ion"] == "Li"
    assert main(["predict", "--ini", str(tmp_path / "a.cif")]) == 2  # half a pair is bad usage


def _run(hops: list[dict], threshold: float = 0.65) -> RunData:
    h = pd.DataFrame(hops)
    structures = h.groupby(["material_id", "working_ion"], as_index=False).agg(
        formula=("formula", "first"), percolation_1d_eV=("predicted_em_eV", "max"))
    structures["passes"] = structures["percolation_1d_eV"] < threshold
    short = structures[structures["passes"]].reset_index(drop=True)
    short.insert(0, "rank", range(1, len(short) + 1))
    short["path_hop_ids"] = [sorted(h[h["material_id"] == m]["hop_id"]) for m in short["material_id"]]
    return RunData(Path("run"), {"config": {"threshold": threshold}}, h, structures, short)


def test_suggest_ranks_a_hop_near_the_threshold_with_a_wide_uncertainty_first():
    def hop(mid, hid, em, sigma):
        return {"material_id": mid, "formula": mid, "working_ion": "Li", "hop_id": hid, "limit": "vacancy",
                "predicted_em_eV": em, "uncertainty_eV": sigma}

    run = _run([hop("A", "a1", 0.60, 0.30), hop("B", "b1", 0.20, 0.05), hop("C", "c1", 1.50, 0.10),
                hop("D", "d1", 0.70, 0.40), hop("D", "d2", 0.30, 0.40)])
    rows = suggest_hops(run, n=10)
    ids = [r["hop_id"] for r in rows]
    assert ids[0] in ("a1", "d1") and ids.index("a1") < ids.index("b1")
    assert "d2" not in ids  # below the bottleneck of a material that failed: it decides nothing
    assert all(set(r) >= {"material_id", "hop_id", "limit", "predicted_em_eV", "uncertainty_eV", "score"}
               for r in rows)
    near = next(r for r in rows if r["hop_id"] == "a1")
    assert near["score"] == pytest.approx(0.5 * math.erfc(0.05 / (0.30 * math.sqrt(2))), abs=1e-4)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)


def test_suggested_hops_go_straight_to_export(tmp_path, licoo2, capsys, one_torch_thread):
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    licoo2.to(filename=str(hosts / "LiCoO2.cif"))
    run_dir = tmp_path / "run"
    assert main(["run", "--chemistry", "Li", "--source", str(hosts), "--sync", "--quiet", "--out", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["suggest", str(run_dir), "--n", "2", "--json"]) == 0
    suggested = json.loads(capsys.readouterr().out)
    assert suggested
    (tmp_path / "next.json").write_text(json.dumps(suggested))
    out = tmp_path / "neb"
    assert main(["export", str(run_dir), "--hops", str(tmp_path / "next.json"), "--out", str(out), "--quiet"]) == 0
    manifest = pd.read_csv(out / "exported.csv")
    assert sorted(manifest["hop_id"]) == sorted(r["hop_id"] for r in suggested)
    assert np.isfinite(manifest["predicted_em_eV"]).all()


def test_an_ase_trajectory_of_images_is_read_like_a_vasp_folder(endpoints, tmp_path):
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for s, e in zip(_images(*endpoints), [0.0, 0.3, 0.55, 0.3, 0.05]):
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.calc = SinglePointCalculator(atoms, energy=-100.0 + e, forces=np.zeros((len(atoms), 3)))
        frames.append(atoms)
    (tmp_path / "neb").mkdir()
    write(tmp_path / "neb" / "neb.traj", frames)
    rec = judge_neb(tmp_path / "neb")
    assert rec.status == "accepted" and rec.em_eV == pytest.approx(0.55) and rec.em_reverse_eV == pytest.approx(0.50)
    assert judge_neb(tmp_path / "neb" / "neb.traj").em_eV == pytest.approx(0.55)
    # the last end point the lower one: the barrier counts from it, not from the first image
    for atoms, e in zip(frames, [0.05, 0.3, 0.55, 0.3, 0.0]):
        atoms.calc = SinglePointCalculator(atoms, energy=-100.0 + e, forces=np.zeros((len(atoms), 3)))
    write(tmp_path / "neb" / "neb.traj", frames)
    rec = judge_neb(tmp_path / "neb")
    assert rec.status == "accepted" and rec.em_eV == pytest.approx(0.55) and rec.em_forward_eV == pytest.approx(0.50)


def test_predict_tells_what_went_wrong(endpoints, tmp_path, capsys, caplog):
    ini, _ = endpoints
    Poscar(ini).write_file(tmp_path / "POSCAR_ini")
    (tmp_path / "broken").write_text("not a structure\n")
    # one pair that cannot be read: exit 3, and the JSON says why
    assert main(["predict", "--ini", str(tmp_path / "POSCAR_ini"), "--fin", str(tmp_path / "broken"), "--json"]) == 3
    got = json.loads(capsys.readouterr().out)
    assert got["predicted_em_eV"] is None and "broken" in got["error"]
    # a CSV row without its fin file: bad usage, before any work
    (tmp_path / "pairs.csv").write_text("ini,fin\nPOSCAR_ini,broken\nPOSCAR_ini\n")
    assert main(["predict", "--pairs", str(tmp_path / "pairs.csv"), "--json"]) == 2
    assert "line(s) 3 lack an ini or fin file" in caplog.text
