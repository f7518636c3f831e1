"""File sources, the source factory and the incremental views, on their own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from screener._version import __version__
from screener.core.errors import ScreenerError, StructureReadError
from screener.core.hashing import structure_hash
from screener.sources.base import DeltaSource, HostItem
from screener.sources.bundled import BundledSource, catalogue_dir, load_catalogue
from screener.sources.factory import make_source
from screener.sources.files import PathSource, read_structure
from screener.sources.incremental import SnapshotSource
from screener.sources.mp.source import MPSource

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"


@pytest.fixture
def folder(tmp_path, licoo2) -> Path:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    licoo2.to(filename=str(root / "LiCoO2.cif"))
    licoo2.to(filename=str(root / "sub" / "POSCAR"), fmt="poscar")
    (root / "sub" / "notes.txt").write_text("not a structure")
    (root / ".hidden.cif").write_text("data_x")
    shutil.copy(BAD / "truncated.cif", root / "truncated.cif")
    return root


def test_a_folder_is_read_recursively_with_structure_names_only(folder):
    src = PathSource(folder)
    assert [p.relative_to(folder).as_posix() for p in src.files()] == ["LiCoO2.cif", "sub/POSCAR", "truncated.cif"]
    items = {h.item: h for h in src.fetch("Li")}
    assert set(items) == {"LiCoO2.cif", "sub/POSCAR", "truncated.cif"}
    assert items["LiCoO2.cif"].formula == "LiCoO2" and items["LiCoO2.cif"].source == "files"
    assert items["sub/POSCAR"].structure.composition == items["LiCoO2.cif"].structure.composition
    bad = items["truncated.cif"]
    assert bad.structure is None and isinstance(bad.error, StructureReadError)
    assert src.database_version() is None


def test_a_single_file_and_a_missing_path(folder, tmp_path):
    (item,) = PathSource(folder / "LiCoO2.cif").fetch("Li")
    assert item.item == "LiCoO2.cif" and item.structure is not None
    with pytest.raises(ScreenerError, match="no such file or folder"):
        PathSource(tmp_path / "nowhere").files()


@pytest.mark.parametrize("name, reason", [
    ("empty.cif", "empty"), ("binary_garbage.cif", "binary"), ("not_a_structure.cif", "no crystal structure"),
])
def test_unreadable_files_say_why(name, reason):
    with pytest.raises(StructureReadError, match=reason):
        read_structure(BAD / name)


def test_the_factory_names_each_source(folder, monkeypatch, tmp_path):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    monkeypatch.setenv("SCREENER_CONFIG", str(tmp_path / "no-config.toml"))
    assert isinstance(make_source(None), BundledSource)
    assert isinstance(make_source("bundled"), BundledSource)
    src = make_source(str(folder))
    assert isinstance(src, PathSource) and src.path == folder
    monkeypatch.setenv("MP_API_KEY", "x" * 32)
    assert isinstance(make_source(None), MPSource)
    # a key kept in the config file picks the Materials Project too
    monkeypatch.delenv("MP_API_KEY")
    (tmp_path / "config.toml").write_text('mp_api_key = "' + "y" * 32 + '"\n')
    monkeypatch.setenv("SCREENER_CONFIG", str(tmp_path / "config.toml"))
    assert isinstance(make_source(None), MPSource)


def test_the_bundled_source_hands_over_the_catalogue_with_its_version():
    items = BundledSource().fetch("Mg")
    assert [h.item for h in items] == [r.material_id for r in load_catalogue("Mg")]
    assert all(h.structure is not None and h.meta["family"] and h.meta["reference"] for h in items)
    assert BundledSource().database_version() == f"bundled-{__version__}"
    assert (catalogue_dir() / "catalogue.json").is_file()


def test_a_delta_source_yields_only_what_it_was_given(licoo2):
    item = HostItem("x", licoo2, "files")
    src = DeltaSource("files", {"Li": [item]}, "db-1")
    assert src.fetch("Li") == [item] and src.fetch("Mg") == [] and src.database_version() == "db-1"


def test_a_snapshot_diffs_by_structure_hash(folder, licoo2):
    changed = licoo2.copy()
    changed.apply_strain(0.01)
    previous = {"LiCoO2.cif": structure_hash(licoo2), "sub/POSCAR": structure_hash(changed),
                "gone.cif": "0" * 16}
    snap = SnapshotSource(PathSource(folder), lambda ion: previous)
    delta = snap.sync("Li")
    assert delta.unchanged == ["LiCoO2.cif"] and delta.changed == ["sub/POSCAR"]
    assert delta.new == ["truncated.cif"] and delta.removed == ["gone.cif"]
    assert [h.item for h in snap.items("Li", ["sub/POSCAR"])] == ["sub/POSCAR"]


def test_structure_hash_ignores_site_order_and_wrapping():
    s = Structure(Lattice.cubic(4.0), ["Li", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    t = Structure(Lattice.cubic(4.0), ["Cl", "Li"], [[0.5, 0.5, 0.5], [1.0, 0, 0]])
    assert structure_hash(s) == structure_hash(t)
    t.translate_sites([0], [0.01, 0, 0])
    assert structure_hash(s) != structure_hash(t)


def test_a_cif_of_several_structures_is_refused_not_cut_to_its_first(tmp_path):
    two = (catalogue_dir() / "LiCoO2.cif").read_text() + "\n" + (catalogue_dir() / "NaCoO2.cif").read_text()
    (tmp_path / "export.cif").write_text(two)
    with pytest.raises(StructureReadError, match="holds 2 structures"):
        read_structure(tmp_path / "export.cif")
    item = PathSource(tmp_path).fetch("Na")[0]
    assert item.structure is None and "holds 2 structures" in str(item.error)
    assert len(read_structure(catalogue_dir() / "LiCoO2.cif")) > 0  # one block: read as before
