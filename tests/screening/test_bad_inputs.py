"""Garbage in, failure rows out: every bad file is named with a reason a chemist understands,
the good files beside them are screened, and the run exits 3."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure
from pymatgen.io.vasp import Poscar

from screener.cli.main import main
from screener.model.registry import default_model_dir
from screener.pathways.config import PathwayConfig
from screener.screening.tasks import host_pathways
from screener.sources.bundled import catalogue_dir

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
GOOD = ["MgCr2O4.cif", "MgTi2S4.cif"]
HUGE = "huge_6048_sites.vasp"

#: file -> (error type, words the message must contain)
EXPECTED = {
    "empty.cif": ("StructureReadError", ["empty"]),
    "truncated.cif": ("StructureReadError", ["incomplete", "truncated"]),
    "not_a_structure.cif": ("StructureReadError", ["no crystal structure"]),
    "binary_garbage.cif": ("StructureReadError", ["binary"]),
    "disordered.cif": ("DisorderedStructureError", ["partially occupied"]),
    "no_working_ion_TiO2.cif": ("NoWorkingIonError", ["TiO2", "no Mg"]),
    "only_working_ion_Mg_metal.cif": ("NoHostFrameworkError", ["no host framework"]),
    "close_contacts.cif": ("CloseContactError", ["0.300 Å apart"]),
    "nan_coordinates.vasp": ("StructureReadError", ["NaN"]),
    HUGE: ("BandTooLargeError", ["6048 sites", "band would have", "> max_band_sites=1000"]),
}

pytestmark = pytest.mark.skipif(not (default_model_dir() / "model.json").exists(),
                                reason="no model: set SCREENER_MODEL_DIR")


def huge_cell() -> Structure:
    """6,048 sites: a 6x6x3 supercell of spinel MgCr2O4 with every atom displaced at random
    (0.03 Å): no translation is left, so it cannot be reduced to a smaller cell."""
    s = Structure.from_file(catalogue_dir() / "MgCr2O4.cif")
    s.make_supercell([6, 6, 3])
    rng = np.random.default_rng(0)
    return Structure(s.lattice, s.species, s.cart_coords + rng.normal(0.0, 0.03, (len(s), 3)),
                     coords_are_cartesian=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    for p in BAD.iterdir():
        if p.name != "README.md":
            shutil.copy(p, d / p.name)
    for name in GOOD:
        shutil.copy(catalogue_dir() / name, d / name)
    Poscar(huge_cell()).write_file(d / HUGE)  # ~330 KB: made here rather than committed
    return d


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bad") / "out"
    try:
        rc = main(["run", "--chemistry", "Mg", "--source", str(corpus), "--sync", "--out", str(out),
                   "--quiet"])
    finally:
        torch.set_num_threads(n)
    return rc, out


def test_the_corpus_lists_every_committed_file():
    committed = {p.name for p in BAD.iterdir() if p.name != "README.md"}
    assert committed == set(EXPECTED) - {HUGE}
    assert sum(p.stat().st_size for p in BAD.iterdir()) < 20_000


def test_every_bad_file_is_one_clear_failure_row_and_the_good_ones_are_screened(run):
    rc, out = run
    assert rc == 3
    failures = pd.read_parquet(out / "failures.parquet")
    assert sorted(failures["item"]) == sorted(EXPECTED)  # one row each, naming the file
    for _, row in failures.iterrows():
        error_type, words = EXPECTED[row["item"]]
        assert row["error_type"] == error_type, row.to_dict()
        for w in words:
            assert w in row["message"], (row["item"], row["message"])
        assert "Traceback" not in row["message"]
    structures = pd.read_parquet(out / "structures.parquet")
    assert sorted(structures["material_id"]) == GOOD
    hops = pd.read_parquet(out / "hops.parquet")
    assert set(hops["material_id"]) == set(GOOD) and hops["predicted_em_eV"].notna().all()


def test_a_huge_cell_without_symmetry_is_refused_fast():
    s = huge_cell()
    t0 = time.perf_counter()
    res = host_pathways(HUGE, s, "Mg", "files", PathwayConfig())
    seconds = time.perf_counter() - t0
    assert [f["error_type"] for f in res["failures"]] == ["BandTooLargeError"]
    assert "refused before symmetry analysis" in res["failures"][0]["message"]
    # pymatgen's primitive-cell search alone takes ~45 s on this cell, the migration graph far more.
    assert seconds < 15, seconds


def test_a_big_supercell_of_a_small_cell_is_still_screened():
    s = Structure.from_file(catalogue_dir() / "MgCr2O4.cif")  # 56 sites, primitive 14
    s.make_supercell([3, 3, 3])  # 1,512 sites: over the cap, but it reduces
    res = host_pathways("MgCr2O4-333", s, "Mg", "files", PathwayConfig())
    assert res["failures"] == [] and len(res["hop_specs"]) == 2
