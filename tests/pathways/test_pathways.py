"""Distinct hops, bands, hop ids, typed errors and the ``hops`` command on known hosts."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from screener.cli.main import main
from screener.core.band import Band
from screener.core.errors import (
    BandTooLargeError,
    CloseContactError,
    DisorderedStructureError,
    NoHopsError,
    NoHostFrameworkError,
    NoWorkingIonError,
    PathwayError,
    StructureReadError,
)
from screener.pathways.bands import build_band
from screener.pathways.checks import check_structure
from screener.pathways.config import DEFAULT_MIN_WIDTH, PathwayConfig
from screener.pathways.percolation import percolation_dimension
from screener.pathways.search import find_pathways
from screener.pathways.supercell import perp_widths

DATASET = Path(__file__).resolve().parents[3] / "shared/data/em-dataset/train_bands.json"


@pytest.fixture(scope="module")
def pw_lfp(lifepo4):
    return find_pathways(lifepo4, "Li")


@pytest.fixture(scope="module")
def pw_spinel(mgmn2o4):
    return find_pathways(mgmn2o4, "Mg")


@pytest.fixture(scope="module")
def pw_lco(licoo2):
    return find_pathways(licoo2, "Li")


def _lengths(pw):
    return sorted({round(h.length_A, 3) for h in pw.hops})


def _upstream_lengths(structure, ion, cutoff=5.0):
    """Distinct hop lengths straight from pymatgen-analysis-diffusion."""
    from pymatgen.analysis.diffusion.neb.full_path_mapper import MigrationGraph

    mg = MigrationGraph.with_distance(structure, ion, cutoff, symprec=0.1)
    return sorted(round(d["hop"].length, 3) for d in mg.unique_hops.values())


def _li_cl():
    """CsCl-type LiCl toy host, a = 4 Å: one Li-Li hop of exactly a."""
    return Structure(Lattice.cubic(4.0), ["Li", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


# --------------------------------------------------------------------------- hops
def test_lifepo4_hops(pw_lfp, lifepo4):
    assert pw_lfp.spacegroup == ("Pnma", 62)
    assert _lengths(pw_lfp) == [3.033, 4.745]  # b-channel zig-zag hop, then the hop along a
    short = pw_lfp.hops[0]
    assert short.length_A == pytest.approx(3.03, abs=0.01)
    assert short.multiplicity == 4 and short.isite_wyckoff == "4a"
    assert [h.limit for h in pw_lfp.hops[:2]] == ["vacancy", "dilute"]
    assert _lengths(pw_lfp) == _upstream_lengths(pw_lfp.structure, "Li")


def test_spinel_hop_8a_8a(pw_spinel, mgmn2o4):
    assert pw_spinel.spacegroup == ("Fd-3m", 227)
    assert len(pw_spinel.structure) == 14  # the primitive cell of the 56-site conventional one
    assert _lengths(pw_spinel) == [pytest.approx(8.50 * 3**0.5 / 4, abs=1e-3)]  # 3.681 Å
    h = pw_spinel.hops[0]
    assert (h.isite_wyckoff, h.esite_wyckoff) == ("8a", "8a")
    assert _lengths(pw_spinel) == _upstream_lengths(pw_spinel.structure, "Mg")
    # the conventional cell as given: the same hop, 4x the multiplicity
    conv = find_pathways(mgmn2o4, "Mg", PathwayConfig(primitive=False))
    assert _lengths(conv) == _lengths(pw_spinel)
    assert conv.hops[0].multiplicity == 4 * h.multiplicity == 16


def test_licoo2_hops(pw_lco):
    assert pw_lco.spacegroup == ("R-3m", 166)
    # in-plane a, in-plane a*sqrt(3), and across the CoO2 slab
    assert _lengths(pw_lco) == [2.816, 4.877, 4.959]
    assert pw_lco.hops[0].isite_wyckoff == "3a"
    assert _lengths(pw_lco) == _upstream_lengths(pw_lco.structure, "Li")


def test_li3v2po43_hops_agree_with_upstream(li3v2po43):
    pw = find_pathways(li3v2po43, "Li")
    lengths = _lengths(pw)
    assert lengths[0] == pytest.approx(3.20, abs=0.01) and len(lengths) == 9
    assert lengths == _upstream_lengths(pw.structure, "Li")


def test_oxidation_states_and_properties_are_removed(lifepo4):
    s = lifepo4.copy()
    s.add_oxidation_state_by_element({"Li": 1, "Fe": 2, "P": 5, "O": -2})
    s.add_site_property("magmom", [0.0] * len(s))
    pw = find_pathways(s, "Li")
    assert _lengths(pw) == [3.033, 4.745]
    assert pw.structure.site_properties == {}
    assert all(not hasattr(sp, "oxi_state") or sp.oxi_state in (None, 0)
               for sp in pw.structure.species)


def test_cutoff_limits_and_config_validation(licoo2):
    pw = find_pathways(licoo2, "Li", PathwayConfig(cutoff=3.0, limits=("dilute",)))
    assert [(h.limit, round(h.length_A, 3)) for h in pw.hops] == [("dilute", 2.816)]
    for bad in ({"cutoff": 0}, {"limits": ("charged",)}, {"limits": ()}, {"max_band_sites": 0},
                {"min_width": float("nan")}, {"n_images": 1}):
        with pytest.raises(ValueError):
            PathwayConfig(**bad)


def test_sparse_ion_sites_get_nearest_neighbour_hops():
    """Chevrel MgMo6S8: Mg cavities are 6.43 Å apart, beyond the 5 Å cutoff."""
    from screener.sources.bundled import catalogue_dir

    chevrel = Structure.from_file(catalogue_dir() / "MgMo6S8.cif")
    pw = find_pathways(chevrel, "Mg")
    assert pw.config.cutoff == 5.0 and pw.cutoff_A == pytest.approx(7.0)
    assert sorted({round(h.length_A, 2) for h in pw.hops}) == [6.43]
    assert percolation_dimension(pw.edges) == 3
    # the cavity hop is the only one: the same as asking for it with a long cutoff
    long = find_pathways(chevrel, "Mg", PathwayConfig(cutoff=7.0))
    assert [h.hop_id for h in long.hops] == [h.hop_id for h in pw.hops]
    with pytest.raises(NoHopsError, match="too far apart"):
        find_pathways(chevrel, "Mg", PathwayConfig(max_cutoff=5.0))
    # a host whose nearest-neighbour hop is within the cutoff is unchanged
    lco = find_pathways(Structure.from_file(catalogue_dir() / "LiCoO2.cif"), "Li")
    assert lco.cutoff_A == 5.0


# --------------------------------------------------------------------------- hop ids
def test_hop_ids_are_stable(pw_lfp, lifepo4, mgmn2o4):
    ids = [h.hop_id for h in pw_lfp.hops]
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)
    assert len(set(ids)) == len(ids)  # distinct across hops and limits
    assert [h.hop_id for h in find_pathways(lifepo4, "Li").hops] == ids
    for seed in (0, 1):
        sites = list(lifepo4)
        random.Random(seed).shuffle(sites)
        shuffled = find_pathways(Structure.from_sites(sites), "Li")
        assert [h.hop_id for h in shuffled.hops] == ids
        assert [h.isite_frac for h in shuffled.hops] == [h.isite_frac for h in pw_lfp.hops]
    sites = list(mgmn2o4)
    random.Random(2).shuffle(sites)
    spinel = find_pathways(Structure.from_sites(sites), "Mg")
    # pinned: the same on every run and machine (sha256 of the rounded hop description)
    assert [h.hop_id for h in spinel.hops] == ["5d9828eba972", "42e7304ab431"]


def test_hop_ids_do_not_depend_on_the_cutoff(licoo2, pw_lco):
    short = find_pathways(licoo2, "Li", PathwayConfig(cutoff=3.0))
    assert {h.hop_id for h in short.hops} < {h.hop_id for h in pw_lco.hops}
    assert pw_lco.hop(short.hops[0].hop_id).length_A == short.hops[0].length_A


# --------------------------------------------------------------------------- bands
def _ion_count(structure, ion):
    return sum(1 for site in structure if site.specie.symbol == ion)


@pytest.mark.parametrize("name", ["pw_lfp", "pw_spinel", "pw_lco"])
def test_bands_of_every_hop(name, request):
    pw = request.getfixturevalue(name)
    n_ion = len(pw.ion_sites)
    for hop in pw.hops:
        band = build_band(pw, hop)
        assert band.num_sites == pw.band_size(hop) <= pw.config.max_band_sites
        assert band.ion == pw.ion and band.n_images == 5
        assert band.hop_length == pytest.approx(hop.length_A, abs=1e-4)
        assert min(perp_widths(band.structure.lattice.matrix)) >= DEFAULT_MIN_WIDTH - 1e-6
        n_cells = round(abs(np.linalg.det(np.array(band.meta["supercell_matrix"]))))
        host = band.host
        removed = 2 if hop.limit == "vacancy" else n_ion * n_cells
        assert len(host) == len(pw.structure) * n_cells - removed
        expected = n_ion * n_cells - 2 if hop.limit == "vacancy" else 0
        assert _ion_count(host, pw.ion) == expected
        # no host atom sits on the start or end site (pymatgen-analysis-diffusion issue #436)
        for k in (0, -1):
            d = host.lattice.get_all_distances(band.image_frac_coords[k], host.frac_coords)
            assert d.min() > 1.0
        assert band.meta["hop_id"] == hop.hop_id


def test_band_supercell_holds_the_hop_as_minimum_image():
    pw = find_pathways(_li_cl(), "Li", PathwayConfig(min_width=6.0))
    (hop, _) = pw.hops
    assert hop.length_A == pytest.approx(4.0)
    # 2 cells along the hop would put the end site half a cell away: 3 are needed
    assert sorted(np.diag(pw.supercell_matrix(hop)).tolist()) == [2, 2, 3]
    band = build_band(pw, hop)
    assert band.hop_length == pytest.approx(4.0)


def test_band_too_large(pw_lfp):
    hop = pw_lfp.hops[0]
    with pytest.raises(BandTooLargeError, match="max_band_sites=100"):
        build_band(pw_lfp, hop, dataclasses.replace(pw_lfp.config, max_band_sites=100))




# --------------------------------------------------------------------------- dataset bands
@pytest.fixture(scope="module")
def dataset_entries():
    if not DATASET.is_file():
        pytest.skip(f"dataset not found at {DATASET}")
    from screener.training.dataset import read_entries

    return {e.jid: e for e in read_entries(DATASET)}


@pytest.mark.parametrize("jid,limit", [("359", "dilute"), ("1", "vacancy")])
def test_dataset_band_is_reproduced(dataset_entries, jid, limit):
    """e-VOPO4_Li_2 (dilute Li, 33 sites) and MgTb2Se4 spinel (vacancy Mg, 59 sites)."""
    ref = dataset_entries[jid].band
    ion, imgs, host = ref.ion, ref.image_frac_coords, ref.host
    again = Band.from_host(host, ion, imgs[0], imgs[-1])
    assert np.allclose(again.structure.frac_coords, ref.structure.frac_coords, atol=1e-8)
    assert [s.species for s in again.structure] == [s.species for s in ref.structure]

    # The whole pipeline: the fully occupied cell (host + start + end site) as input, the
    # dataset's end points as the hop, no supercell: the same band, site for site.
    full = host.copy()
    full.insert(0, ion, imgs[-1])
    full.insert(0, ion, imgs[0])
    config = PathwayConfig(min_width=0.0, primitive=False, cutoff=max(5.0, ref.hop_length + 0.1))
    pw = find_pathways(full, ion, config)
    assert round(ref.hop_length, 3) in _lengths(pw)
    proto = next(h for h in pw.hops if h.limit == limit)
    d = imgs[-1] - imgs[0]
    hop = dataclasses.replace(proto, isite_frac=tuple(imgs[0]),
                              esite_frac=tuple(imgs[0] + d - np.round(d)),
                              length_A=ref.hop_length)
    band = build_band(pw, hop)
    assert band.num_sites == ref.num_sites
    dist = band.structure.lattice.get_all_distances(band.structure.frac_coords,
                                                    ref.structure.frac_coords)
    match = dist.argmin(axis=1)
    assert dist.min(axis=1).max() < 1e-4
    assert sorted(match.tolist()) == list(range(ref.num_sites))
    assert match[:5].tolist() == [0, 1, 2, 3, 4]
    assert all(band.structure[i].species == ref.structure[j].species for i, j in enumerate(match))


# --------------------------------------------------------------------------- typed errors
def test_disordered_structure_is_refused_unless_ordered():
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.13), [{"Li": 0.5, "Na": 0.5}, "Cl"],
                                  [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(DisorderedStructureError, match="partially occupied"):
        find_pathways(s, "Li")
    pw = find_pathways(s, "Li", PathwayConfig(order_disordered=True))
    assert pw.structure.is_ordered and pw.hops
    assert pw.structure.composition.reduced_composition == Composition("LiNaCl2")


@pytest.mark.parametrize("structure,ion,error", [
    (Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), "Li",
     NoWorkingIonError),
    (Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), "Qq",
     NoWorkingIonError),
    (Structure(Lattice.cubic(3.5), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]]), "Li",
     NoHostFrameworkError),
    (Structure(Lattice.cubic(4.0), ["Li", "Cl", "Cl"],
               [[0, 0, 0], [0.5, 0.5, 0.5], [0.55, 0.5, 0.5]]),
     "Li", CloseContactError),
    (Structure(Lattice.cubic(4.0), ["Li", "Cl"], [[0, 0, 0], [float("nan"), 0.5, 0.5]]), "Li",
     StructureReadError),
    (Structure(Lattice.cubic(8.0), ["Li", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), "Li",
     NoHopsError),
])
def test_typed_errors(structure, ion, error):
    with pytest.raises(error) as info:
        find_pathways(structure, ion)
    assert str(info.value)


def test_symmetry_failure_is_a_typed_error(lifepo4):
    with pytest.raises(PathwayError, match="symprec=3.0"):
        find_pathways(lifepo4, "Li", PathwayConfig(symprec=3.0))


def test_check_structure_returns_a_clean_copy(lifepo4):
    s = check_structure(lifepo4, "Li")
    assert s is not lifepo4 and len(s) == len(lifepo4)
    assert np.all((s.frac_coords >= 0) & (s.frac_coords < 1))


# --------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def lfp_cif(lifepo4, tmp_path_factory):
    path = tmp_path_factory.mktemp("hops") / "LiFePO4.cif"
    lifepo4.to(filename=str(path))
    return path


def test_cli_table(lfp_cif, capsys):
    assert main(["hops", str(lfp_cif), "--ion", "Li"]) == 0
    out = capsys.readouterr().out
    assert "LiFePO4" in out and "Pnma" in out and "3.033" in out and "4.745" in out
    assert "vacancy" in out and "dilute" in out and "percolate in 2D" in out


def test_cli_json(lfp_cif, capsys, lifepo4):
    assert main(["hops", str(lfp_cif), "--ion", "Li", "--json", "--cutoff", "4"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["limit"], r["length_A"]) for r in rows] == [("vacancy", 3.0328), ("dilute", 3.0328)]
    assert {"hop_id", "multiplicity", "isite_frac", "esite_frac", "band_sites"} <= set(rows[0])
    # the ids do not depend on the file format
    assert rows[0]["hop_id"] == find_pathways(lifepo4, "Li").hops[0].hop_id


def test_cli_errors(lfp_cif, tmp_path, capsys):
    assert main(["hops", str(tmp_path / "missing.cif"), "--ion", "Li"]) == 2
    bad = tmp_path / "bad.cif"
    bad.write_text("not a structure\n")
    assert main(["hops", str(bad), "--ion", "Li"]) == 3
    assert main(["hops", str(lfp_cif), "--ion", "Na"]) == 3
    assert main(["hops", str(lfp_cif), "--ion", "Xx"]) == 2
    assert main(["hops", str(lfp_cif), "--ion", "Li", "--cutoff", "-1"]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "StructureReadError" in err and "NoWorkingIonError" in err
    assert "Traceback" not in err


def test_cli_help(capsys):
    assert main(["hops", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--ion", "--cutoff", "--max-cutoff", "--limit", "--min-width", "--max-band-sites", "--symprec",
                "--order-disordered", "--no-primitive", "--json", "FILE"):
        assert opt in out
