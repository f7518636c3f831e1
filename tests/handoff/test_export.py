"""``screener export``: NEB-ready inputs for the path hops of the top shortlisted materials."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.io import read

from screener.cli.main import main
from screener.core.files import safe_filename
from screener.handoff.export import (
    MANIFEST_COLUMNS,
    ExportOptions,
    export_run,
    regenerate_bands,
    select_hops,
)
from screener.handoff.neb_io import (
    closest_contact,
    hop_folder_name,
    neb_images,
    species_grouped,
)
from screener.screening.rundir import load_run
from screener.sources.bundled import catalogue_dir


@pytest.fixture(scope="module")
def lfp_run(tmp_path_factory) -> tuple[Path, Path]:
    """A run on olivine LiFePO4 filed under a sub-folder (material id ``sub/LiFePO4.cif``)."""
    from screener.screening.run import screen

    hosts = tmp_path_factory.mktemp("hosts")
    (hosts / "sub").mkdir()
    shutil.copy(catalogue_dir() / "LiFePO4.cif", hosts / "sub" / "LiFePO4.cif")
    out = tmp_path_factory.mktemp("run") / "run"
    res = screen("Li", str(hosts), out=out, synchronous=True, threshold=10.0)
    assert len(res.shortlist) == 1
    return out, hosts


def test_safe_names_are_safe_and_distinct():
    ids = ["sub/LiFePO4.cif", "sub_LiFePO4.cif", "../../etc/passwd", "a b/c.cif", "mp-123", "bundled-lifepo4"]
    names = [safe_filename(i) for i in ids]
    assert len(set(names)) == len(ids)
    for n in names:
        assert "/" not in n and "\\" not in n and not n.startswith(".") and n not in (".", "..")
    assert safe_filename("mp-123") == "mp-123"  # clean ids are kept as they are
    assert hop_folder_name("sub/LiFePO4.cif", "abc123").endswith("__abc123")


def test_selection_is_the_path_hops_of_the_top_materials(lfp_run):
    run = load_run(lfp_run[0])
    sel = select_hops(run, top=1)
    assert set(sel["hop_id"]) == set(run.shortlist["path_hop_ids"].iloc[0])
    assert (sel["rank"] == 1).all() and (sel["material_id"] == "sub/LiFePO4.cif").all()


def test_vasp_layout_image_count_and_no_close_contacts(lfp_run, tmp_path):
    run_dir, hosts = lfp_run
    out = tmp_path / "neb"
    rc = main(["export", str(run_dir), "--top", "1", "--format", "vasp", "--out", str(out),
               "--source", str(hosts), "--images", "5", "--quiet"])
    assert rc == 0
    manifest = pd.read_csv(out / "exported.csv")
    assert list(manifest.columns) == MANIFEST_COLUMNS
    run = load_run(run_dir)
    assert set(manifest["hop_id"]) == set(run.shortlist["path_hop_ids"].iloc[0])
    assert (manifest["status"] == "exported").all() and (manifest["images_from"] == "idpp").all()
    assert manifest["predicted_em_eV"].notna().all() and manifest["uncertainty_eV"].notna().all()
    assert (manifest["min_distance_A"] >= 0.5).all()
    for _, r in manifest.iterrows():
        folder = out / r["folder"]
        assert folder.parent == out and r["hop_id"] in folder.name and "/" not in r["folder"]
        assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [f"{k:02d}" for k in range(7)]
        images = [read(folder / f"{k:02d}" / "POSCAR", format="vasp") for k in range(7)]
        assert r["n_images"] == 7 and len({len(a) for a in images}) == 1
        assert images[0].get_chemical_symbols() == images[-1].get_chemical_symbols()
        d, *_ = closest_contact(images)
        assert d >= 0.5
        # The ion (atom 0) moves by the hop length from the first to the last image.
        both = images[0].copy()
        both.append(images[-1][0])
        assert both.get_distance(0, len(both) - 1, mic=True) == pytest.approx(r["length_A"], abs=1e-3)
        meta = json.loads((folder / "hop.json").read_text())
        assert meta["hop_id"] == r["hop_id"] and meta["status"] == "exported" and meta["folder"] == r["folder"]


def test_ase_trajectory_and_close_contact_refusal(lfp_run, tmp_path):
    run_dir, hosts = lfp_run
    out = tmp_path / "traj"
    man = export_run(run_dir, out, ExportOptions(top=1, fmt="ase", n_intermediate=3, idpp_steps=0,
                                                 source=str(hosts)))
    assert (man["status"] == "exported").all()
    traj = read(out / man["folder"].iloc[0] / "neb.traj", index=":")
    assert len(traj) == 5
    # P-O bonds are ~1.53 Å: asking for 1.7 Å refuses every hop and writes nothing for it; the
    # images an earlier export left in the same folder are removed, not left stale.
    rc = main(["export", str(run_dir), "--top", "1", "--format", "ase", "--out", str(out), "--images", "1",
               "--idpp-steps", "0", "--min-distance", "1.7", "--source", str(hosts), "--quiet"])
    assert rc == 3
    man2 = pd.read_csv(out / "exported.csv")
    assert (man2["status"] == "refused: close contact").all()
    assert (man2["min_distance_A"] < 1.7).all() and man2["message"].str.contains("Å apart").all()
    assert not list(out.rglob("neb.traj")) and not list(out.rglob("hop.json"))


def test_closest_contact_finds_periodic_neighbours():
    a = Atoms("LiO", positions=[[0.1, 0, 0], [4.7, 0, 0]], cell=[5, 5, 5], pbc=True)
    d, k, i, j = closest_contact([a.copy(), a])
    assert d == pytest.approx(0.4) and {i, j} == {0, 1}


def test_species_grouped_keeps_the_ion_first_and_one_order():
    a = Atoms("LiFeOLiOFe", positions=np.arange(18).reshape(6, 3) * 0.7, cell=[9, 9, 9], pbc=True)
    b = a.copy()
    b.positions[0, 0] += 0.5
    ga, gb = species_grouped([a, b])
    assert ga.get_chemical_symbols() == ["Li", "Li", "Fe", "Fe", "O", "O"]
    assert np.allclose(gb.positions[0] - ga.positions[0], [0.5, 0, 0])


def test_refined_images_are_exported_instead(lfp_run, tmp_path):
    """When refine results exist (here: stand-in images), export hands them out and says so."""
    from ase.io import write

    from screener.handoff.refined_table import REFINED_COLUMNS

    run_dir, hosts = lfp_run
    run_copy = tmp_path / "run"
    shutil.copytree(run_dir, run_copy)
    run = load_run(run_copy)
    sel = select_hops(run, 1).iloc[[0]]
    band = regenerate_bands(run, sel, str(hosts))[(sel["material_id"].iloc[0], "Li", sel["hop_id"].iloc[0])]
    images = neb_images(band, n_intermediate=2, idpp_steps=0)
    rel = f"refined/{hop_folder_name(sel['material_id'].iloc[0], sel['hop_id'].iloc[0])}/chgnet.traj"
    (run_copy / rel).parent.mkdir(parents=True)
    write(run_copy / rel, images)
    row = {c: None for c in REFINED_COLUMNS}
    row.update(material_id=sel["material_id"].iloc[0], working_ion="Li", hop_id=sel["hop_id"].iloc[0],
               potential="chgnet", neb_em_eV=0.42, converged=True, images_path=rel, error="",
               finished_at="2026-01-01T00:00:00+00:00")
    pd.DataFrame([row], columns=REFINED_COLUMNS).to_parquet(run_copy / "refined.parquet")
    man = export_run(run_copy, tmp_path / "out", ExportOptions(top=1, n_intermediate=1, idpp_steps=0,
                                                               source=str(hosts)))
    got = man.set_index("hop_id").loc[sel["hop_id"].iloc[0]]
    assert got["images_from"] == "refined:chgnet" and got["neb_em_eV"] == pytest.approx(0.42)
    assert got["n_images"] == 4  # the refined band's count, not --images
    assert (man.drop(index=man.index[man["hop_id"] == sel["hop_id"].iloc[0]])["images_from"] == "idpp").all()
    # rows recorded under an alias (sevenn) are found by the potential's name, and named by it
    pd.DataFrame([{**row, "potential": "sevenn"}], columns=REFINED_COLUMNS).to_parquet(run_copy / "refined.parquet")
    man = export_run(run_copy, tmp_path / "out2", ExportOptions(top=1, n_intermediate=1, idpp_steps=0,
                                                                source=str(hosts), refined_potential="7net-0"))
    assert man.set_index("hop_id").loc[sel["hop_id"].iloc[0], "images_from"] == "refined:7net-0"
    # an unknown potential is refused before any work
    rc = main(["export", str(run_copy), "--top", "1", "--potential", "no-such-potential", "--source", str(hosts),
               "--out", str(tmp_path / "out3"), "--quiet"])
    assert rc == 2 and not (tmp_path / "out3").exists()


def test_files_run_without_source_is_a_usage_error(lfp_run, tmp_path):
    # A run.json that does not record where its files came from (older runs): usage error.
    old = tmp_path / "old_run"
    shutil.copytree(lfp_run[0], old)
    info = json.loads((old / "run.json").read_text())
    info.pop("source_path", None)
    (old / "run.json").write_text(json.dumps(info))
    rc = main(["export", str(old), "--top", "1", "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 2
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "y"), "--quiet"]) == 2


def test_file_runs_record_their_folder_so_export_needs_no_source(tmp_path):
    from screener.screening.run import screen
    from screener.screening.rundir import load_run, source_spec_of

    hosts = tmp_path / "hosts"
    hosts.mkdir()
    shutil.copy(catalogue_dir() / "LiCoO2.cif", hosts / "LiCoO2.cif")
    out = tmp_path / "run"
    screen("Li", str(hosts), out=out, synchronous=True, threshold=10.0)
    assert source_spec_of(load_run(out)) == str(hosts.resolve())


def test_vasp_export_writes_a_ci_neb_stub_and_takes_smaller_cells(lfp_run, tmp_path, caplog):
    run_dir, hosts = lfp_run
    big, small = tmp_path / "big", tmp_path / "small"
    assert main(["export", str(run_dir), "--top", "1", "--out", str(big), "--quiet"]) == 0
    assert main(["export", str(run_dir), "--top", "3", "--out", str(small), "--min-width", "6", "--quiet",
                 "--no-vasp-inputs"]) == 0
    assert "asks for more materials than the shortlist holds (1)" in caplog.text
    a, b = pd.read_csv(big / "exported.csv"), pd.read_csv(small / "exported.csv")
    assert a["hop_id"].tolist() == b["hop_id"].tolist()  # the same hops ...
    assert (b["n_atoms"] < a["n_atoms"]).all()  # ... in smaller cells
    folder = big / a["folder"].iloc[0]
    incar = (folder / "INCAR").read_text()
    assert "IMAGES = 5" in incar and "LCLIMB = .TRUE." in incar and "SPRING = -5" in incar
    assert "Fe" in incar and "LDAU" in incar  # the open-shell metal is flagged for +U
    kpoints = (folder / "KPOINTS").read_text().splitlines()
    assert kpoints[2] == "Gamma" and all(int(n) >= 1 for n in kpoints[3].split())
    assert not (small / b["folder"].iloc[0] / "INCAR").exists()
