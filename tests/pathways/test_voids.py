"""Empty sites (voids) and hops through them, on known cases built from crystallographic facts."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from screener.cli.main import main
from screener.core.errors import NoWorkingIonError, TooManyVoidsError
from screener.pathways.bands import build_band
from screener.pathways.config import PathwayConfig
from screener.pathways.percolation import percolation_dimension
from screener.pathways.search import find_pathways
from screener.pathways.voids import VoidSettings, find_voids
from screener.sources.bundled import BundledSource, catalogue_dir, load_catalogue
from screener.sources.files import read_structure

VOIDS = PathwayConfig(sites="voids")


def _lambda_mno2(a: float = 8.03) -> Structure:
    """λ-MnO2: the spinel LiMn2O4 without Li (Fd-3m origin 1: Mn 16d, O 32e x = 0.3875)."""
    x = 0.3875
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Mn", "O"], [[5 / 8] * 3, [x] * 3])


def _coo2(licoo2: Structure) -> Structure:
    s = licoo2.copy()
    s.remove_species(["Li"])
    return s


def _dimension(pw, max_length: float) -> int:
    """Percolation dimension of the hops no longer than ``max_length`` (Å)."""
    labels = {h.hop_label for h in pw.hops if h.length_A <= max_length}
    return percolation_dimension([e for e in pw.edges if e[3] in labels])


def _hops(pw, kinds: tuple[str, str] | None = None, limit: str | None = None):
    return [h for h in pw.hops if (kinds is None or {h.isite_kind, h.esite_kind} == set(kinds))
            and (limit is None or h.limit == limit)]


def test_lambda_mno2_has_the_8a_and_16c_voids_and_3d_paths_through_them():
    a = 8.03
    pw = find_pathways(_lambda_mno2(a), "Mg", VOIDS)
    assert len(pw.void_sites) == len(pw.ion_sites) == 6  # per primitive cell: 2 x 8a + 4 x 16c
    labels: dict[tuple[str, str], float] = {}
    for h in pw.hops:  # the shortest hop between each pair of site kinds
        key = (h.isite_wyckoff, h.esite_wyckoff)
        labels[key] = min(labels.get(key, math.inf), h.length_A)
    assert {h.limit for h in pw.hops} == {"dilute"}  # an empty framework: the dilute limit
    assert all(h.isite_kind == h.esite_kind == "void" for h in pw.hops)
    assert labels[("8a", "8a")] == pytest.approx(a * math.sqrt(3) / 4, abs=0.01)  # 3.48 Å, through 16c
    assert labels[("8a", "16c")] == pytest.approx(a * math.sqrt(3) / 8, abs=0.01)
    assert _dimension(pw, 1.8) == 3  # 8a -> 16c -> 8a alone percolates in 3D
    voids = find_voids(_lambda_mno2(a).get_primitive_structure(), "Mg")
    by_cn = Counter(v.coordination for v in voids)
    assert by_cn == {4: 2, 6: 4} and all(v.face_sharing_cations == 0 for v in voids)


def test_coo2_gives_li_octahedral_sites_with_2d_in_plane_hops(licoo2):
    pw = find_pathways(_coo2(licoo2), "Li", VOIDS)
    oct_oct = [h for h in pw.hops if h.isite_wyckoff == h.esite_wyckoff == "3a"]
    assert oct_oct and oct_oct[0].length_A == pytest.approx(2.8156, abs=0.01)
    assert _dimension(pw, 3.0) == 2  # in the Li layer only


def test_the_dense_slab_holds_no_void(licoo2):
    """CoO2: the Li-layer tetrahedra (one Co across a face) are sites, the slab's (three Co) are not."""
    voids = find_voids(_coo2(licoo2).get_primitive_structure(), "Li")
    assert Counter((v.coordination, v.face_sharing_cations) for v in voids) == {(6, 0): 1, (4, 1): 2}
    s = _coo2(licoo2)
    for v in find_voids(s, "Li"):  # nothing in the slab: every void keeps Co at >= 1.8 Å
        co = min(s.lattice.get_distance_and_image(v.frac, site.frac_coords)[0] for site in s if site.specie.symbol == "Co")
        assert co > 1.8, v


def test_licoo2_with_voids_adds_an_octahedral_to_tetrahedral_hop(licoo2):
    plain = find_pathways(licoo2, "Li")
    pw = find_pathways(licoo2, "Li", VOIDS)
    oct_tet = _hops(pw, ("occupied", "void"), "vacancy")
    assert oct_tet and 1.6 <= min(h.length_A for h in oct_tet) <= 1.9
    # the occupied -> occupied hops keep their lengths (and ids)
    same = {(h.hop_id, h.limit, round(h.length_A, 4)) for h in _hops(pw, ("occupied",))}
    assert {(h.hop_id, h.limit, round(h.length_A, 4)) for h in plain.hops} == same
    # no void -> void hop in the vacancy limit: the full host has no room for a second ion
    assert not [h for h in _hops(pw, ("void",), "vacancy") if h.isite_kind == h.esite_kind]
    band = build_band(pw, oct_tet[0])
    assert band.num_sites == pw.band_size(oct_tet[0])
    n_cells = round(band.structure.volume / plain.structure.volume)
    assert band.host.composition["Li"] == n_cells - 1  # the real host less the migrating ion; voids empty


def test_nasicon_goes_m1_m2_m1_in_3d():
    s = read_structure(catalogue_dir() / "NaZr2P3O12.cif")
    pw = find_pathways(s, "Na", VOIDS)
    m1_m2 = _hops(pw, ("occupied", "void"))
    assert m1_m2 and all(3.2 <= h.length_A <= 3.6 for h in m1_m2[:1])
    labels = {h.hop_label for h in m1_m2 if 3.2 <= h.length_A <= 3.6}
    assert percolation_dimension([e for e in pw.edges if e[3] in labels]) == 3


def test_too_many_voids_is_a_clear_error():
    with pytest.raises(TooManyVoidsError, match="void sites for Mg"):
        find_voids(_lambda_mno2(), "Mg", VoidSettings(max_sites=2))


def test_without_voids_a_host_without_the_ion_names_the_option(licoo2):
    with pytest.raises(NoWorkingIonError, match="--sites voids"):
        find_pathways(_coo2(licoo2), "Li")


def test_the_bundled_frameworks_come_only_with_voids():
    plain = {h.item for h in BundledSource().fetch("Mg")}
    more = {h.item for h in BundledSource("voids").fetch("Mg")}
    frameworks = {r.material_id for r in load_catalogue("Mg", frameworks=True)} - plain
    assert plain < more and more - plain == frameworks
    assert {"bundled-mno2-lambda", "bundled-mo6s8"} <= frameworks
    assert all(r.insertion_ions and not r.working_ions for r in load_catalogue(None, frameworks=True)
               if r.material_id in frameworks)


@pytest.fixture(scope="module")
def files(tmp_path_factory, licoo2):
    root = tmp_path_factory.mktemp("frameworks")
    shutil.copy(catalogue_dir() / "TiS2.cif", root / "TiS2.cif")
    licoo2.to(filename=str(root / "LiCoO2.cif"))
    return root


def test_run_with_voids_marks_the_ends_of_every_hop(files, tmp_path, one_torch_thread):
    out = tmp_path / "plain"
    assert main(["run", "--chemistry", "Li", "--source", str(files), "--sync", "--quiet", "--out", str(out)]) == 3
    failures = pd.read_parquet(out / "failures.parquet")
    assert failures["item"].tolist() == ["TiS2.cif"] and "--sites voids" in failures["message"].iloc[0]

    out = tmp_path / "voids"
    assert main(["run", "--chemistry", "Li", "--source", str(files), "--sync", "--quiet", "--sites", "voids",
                 "--out", str(out)]) == 0
    hops = pd.read_parquet(out / "hops.parquet")
    assert set(hops["isite_kind"]) | set(hops["esite_kind"]) == {"occupied", "void"}
    tis2 = hops[hops["material_id"] == "TiS2.cif"]
    assert len(tis2) and (tis2["limit"] == "dilute").all() and (tis2["isite_kind"] == "void").all()
    assert hops["predicted_em_eV"].notna().all()
    structures = pd.read_parquet(out / "structures.parquet")
    assert set(structures["material_id"]) == {"TiS2.cif", "LiCoO2.cif"}
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["pathways"]["sites"] == "voids"
    # the hand-off rebuilds a void hop's band from the run's settings
    exported = tmp_path / "neb"
    assert main(["export", str(out), "--top", "5", "--out", str(exported), "--quiet", "--no-vasp-inputs"]) == 0
    manifest = pd.read_csv(exported / "exported.csv")
    assert (manifest["status"] == "exported").all()


def test_hops_json_names_the_kind_of_each_end(files, capsys):
    assert main(["hops", str(files / "TiS2.cif"), "--ion", "Li", "--sites", "voids", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["isite_kind"] for r in rows} == {"void"} and all("esite_kind" in r for r in rows)


def test_the_van_der_waals_octahedron_of_tis2_is_a_site_despite_its_shared_faces():
    """1T-TiS2: the interlayer octahedron shares faces with the TiS6 above and below (Ti at c/2),
    yet it is where Li and Na sit in LiTiS2 and NaTiS2."""
    s = read_structure(catalogue_dir() / "TiS2.cif")
    for ion in ("Li", "Na"):
        octahedral = [v for v in find_voids(s, ion) if v.coordination == 6]
        assert len(octahedral) == 1 and octahedral[0].frac[2] == pytest.approx(0.5, abs=0.01)
        assert octahedral[0].anion_distance_A == pytest.approx(2.43, abs=0.02)


def test_a_partly_lithiated_host_keeps_occupied_and_void_hops_apart(licoo2):
    """Li5Co6O12 (LiCoO2 x 2 with one Li out): with its void filled it looks like R-3m LiCoO2 again."""
    s = licoo2.copy()
    s.make_supercell([2, 1, 1])
    s.remove_sites([next(i for i, site in enumerate(s) if site.specie.symbol == "Li")])
    pw = find_pathways(s, "Li", VOIDS)
    assert pw.spacegroup[1] != 166  # the host's own group, not the filled-in R-3m
    kinds = {i: k for i, k in zip(pw.ion_sites, ["void" if i in set(pw.void_sites) else "occupied"
                                                   for i in pw.ion_sites])}
    by_label = {h.hop_label: {h.isite_kind, h.esite_kind} for h in pw.hops}
    for u, v, _, label in pw.edges:  # every edge of a label joins the kinds its hop says
        assert {kinds[pw.ion_sites[u]], kinds[pw.ion_sites[v]]} == by_label[label]
    # the in-plane hops between occupied sites are vacancy hops of their own
    inplane = [h for h in _hops(pw, ("occupied", "occupied"), "vacancy") if h.length_A < 3.0]
    assert inplane
