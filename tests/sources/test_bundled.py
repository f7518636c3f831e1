"""Every bundled host: parses, has its declared symmetry and formula, balances charge."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest
from pymatgen.core import Composition, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from screener.sources.bundled import HostRecord, catalogue_dir, load_catalogue

#: Formal oxidation state of each working ion.
ION_CHARGE = {"Li": 1, "Na": 1, "K": 1, "Mg": 2, "Ca": 2, "Zn": 2, "Al": 3}
ANIONS = {"O", "S", "Se", "F"}
MIN_DISTANCE = 1.5  # Angstrom; no bundled host has H, C-N or other short bonds
SYMPREC = 0.1

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

INDEX = json.loads((catalogue_dir() / "catalogue.json").read_text())
IDS = [rec["id"] for rec in INDEX]
BY_ID = {rec["id"]: rec for rec in INDEX}


@lru_cache(maxsize=1)
def _records() -> dict[str, HostRecord]:
    return {r.material_id: r for r in load_catalogue(frameworks=True)}


@pytest.fixture(params=IDS)
def host(request: pytest.FixtureRequest) -> tuple[dict, Structure]:
    """(catalogue.json record, structure read from its CIF)."""
    rec = BY_ID[request.param]
    return rec, _records()[request.param].structure


def test_catalogue_size_and_ions() -> None:
    assert len(INDEX) >= 40
    assert len(set(IDS)) == len(IDS)
    counts = Counter(ion for rec in INDEX for ion in rec["working_ions"])
    for ion in ("Mg", "Ca", "Zn", "Li", "Na", "K"):
        assert counts[ion] >= 4, f"only {counts[ion]} {ion} hosts"


def test_the_empty_frameworks_a_chemist_tries_first_are_bundled() -> None:
    frameworks = {Composition(rec["formula"]).reduced_formula for rec in INDEX if rec.get("insertion_ions")}
    assert {"MnO2", "TiS2", "MoS2", "Mo3S4"} <= frameworks


def test_catalogue_covers_the_host_families() -> None:
    families = Counter(rec["family"] for rec in INDEX)
    for family in ("spinel", "olivine", "layered", "nasicon", "chevrel", "vanadate", "post-spinel"):
        assert families[family] >= 1, f"no {family} host"
    assert families["nasicon"] >= 3


def test_every_cif_listed() -> None:
    on_disk = {p.name for p in catalogue_dir().glob("*.cif")}
    assert on_disk == {rec["file"] for rec in INDEX}


def test_load_catalogue_filters_by_ion() -> None:
    mg = load_catalogue("Mg")
    assert mg and all("Mg" in r.working_ions for r in mg)
    assert all("Mg" in r.structure.composition for r in mg)
    assert len(mg) == sum("Mg" in rec["working_ions"] for rec in INDEX)
    assert [r.material_id for r in mg] == sorted(r.material_id for r in mg)
    assert len(load_catalogue()) == sum(bool(rec["working_ions"]) for rec in INDEX)
    assert len(load_catalogue(frameworks=True)) == len(INDEX)
    assert load_catalogue("Xe") == []


def test_load_catalogue_returns_copies() -> None:
    first = load_catalogue("Li")[0]
    first.structure.remove_species(list(first.working_ions))
    again = load_catalogue("Li")[0]
    assert first.working_ions[0] in again.structure.composition


def test_cif_parses_with_reference(host: tuple[dict, Structure]) -> None:
    rec, structure = host
    assert rec["reference"].strip()
    text = (catalogue_dir() / rec["file"]).read_text()
    assert f"# Reference: {rec['reference']}" in text.splitlines()[:4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = Structure.from_file(catalogue_dir() / rec["file"])
    assert len(fresh) == len(structure) > 0
    assert structure.is_ordered


def test_formula_and_working_ions(host: tuple[dict, Structure]) -> None:
    rec, structure = host
    comp = structure.composition
    assert comp.reduced_formula == Composition(rec["formula"]).reduced_formula
    for ion in rec["working_ions"]:
        assert ion in comp, f"{rec['id']} lacks its working ion {ion}"
    # an empty framework holds none of the ions it is offered for, and is offered for some
    assert bool(rec["working_ions"]) != bool(rec.get("insertion_ions"))
    for ion in rec.get("insertion_ions", []):
        assert ion not in comp


def test_spacegroup(host: tuple[dict, Structure]) -> None:
    rec, structure = host
    found = SpacegroupAnalyzer(structure, symprec=SYMPREC).get_space_group_number()
    assert found == rec["spacegroup_number"], f"{rec['id']}: found {found}"


def test_charge_balance(host: tuple[dict, Structure]) -> None:
    """Some charge-balanced guess gives each working ion its formal state, anions negative."""
    rec, structure = host
    guesses = structure.composition.reduced_composition.oxi_state_guesses()
    assert guesses, f"{rec['id']}: no charge-balanced oxidation states"
    wanted = {ion: ION_CHARGE[ion] for ion in rec["working_ions"]}
    assert any(
        all(abs(g[ion] - q) < 1e-6 for ion, q in wanted.items())
        and all(g[el] < 0 for el in g if el in ANIONS)
        for g in guesses
    ), f"{rec['id']}: guesses {guesses[:3]}"


def test_no_close_contacts(host: tuple[dict, Structure]) -> None:
    rec, structure = host
    dist = structure.distance_matrix + np.eye(len(structure)) * 1e3
    i, j = np.unravel_index(np.argmin(dist), dist.shape)
    assert dist[i, j] >= MIN_DISTANCE, (
        f"{rec['id']}: {structure[i].specie}-{structure[j].specie} at {dist[i, j]:.3f} A"
    )
