"""Reading dataset entries in band form and end-point form."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from screener import Band, read_entries
from screener.core.band import structure_to_jarvis_dict
from screener.core.errors import BandBuildError
from screener.training.dataset import entry_from_record
from tests.helpers_dataset import dataset_records


def _same_sites(a: Structure, b: Structure) -> float:
    assert [s.specie.symbol for s in a] == [s.specie.symbol for s in b]
    d = a.frac_coords - b.frac_coords
    return float(np.abs(d - np.round(d)).max())


def test_band_form_reads_images_first():
    rec = dataset_records(1)[0]
    e = entry_from_record(rec)
    assert e.error is None and e.band is not None
    assert e.target == pytest.approx(rec["target"])
    assert e.band.ion == rec["atoms"]["elements"][0]
    assert e.band.num_sites == len(rec["atoms"]["elements"])
    # The dataset's hop length column is the image 0 -> image 4 distance.
    assert e.band.hop_length > 1.0


@pytest.mark.parametrize("n", [12])
def test_bands_from_endpoints_reproduce_dataset_bands(n):
    for rec in dataset_records(n):
        band = Band.from_jarvis_dict(rec["atoms"])
        ini, fin = band.endpoint(0), band.endpoint(-1)
        # Shuffle nothing but move the ion to the end of the site list in both end points:
        # the builder must find it by its displacement, not by its index.
        order = list(range(1, len(ini))) + [0]
        ini = Structure.from_sites([ini[i] for i in order])
        fin = Structure.from_sites([fin[i] for i in order])
        e = entry_from_record({"jid": rec["jid"], "atoms_ini": structure_to_jarvis_dict(ini),
                               "atoms_fin": structure_to_jarvis_dict(fin)})
        assert e.error is None, e.error
        assert e.target is None
        # host + image 0 and host + image 4 are the dataset's end points; middle images match too.
        assert _same_sites(e.band.structure, band.structure) < 1e-9
        assert _same_sites(e.band.endpoint(0), band.endpoint(0)) < 1e-9
        assert _same_sites(e.band.endpoint(-1), band.endpoint(-1)) < 1e-9


def test_endpoints_across_the_cell_take_the_minimum_image():
    lat = Lattice.cubic(4.0)
    ini = Structure(lat, ["Li", "O"], [[0.9, 0.5, 0.5], [0.5, 0.0, 0.0]])
    fin = Structure(lat, ["Li", "O"], [[0.1, 0.5, 0.5], [0.5, 0.0, 0.0]])
    band = Band.from_endpoints(ini, fin)
    assert band.hop_length == pytest.approx(0.8)
    assert band.ion == "Li" and band.num_sites == 6


def test_endpoints_that_do_not_match_are_refused():
    lat = Lattice.cubic(4.0)
    a = Structure(lat, ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(BandBuildError):
        Band.from_endpoints(a, a)  # nothing moves
    b = Structure(lat, ["Li", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])
    with pytest.raises(BandBuildError):
        Band.from_endpoints(a, b)


def test_malformed_records_become_errors(tmp_path):
    good = dataset_records(1)[0]
    records = [
        good,
        {"jid": 901, "atoms": {"lattice_mat": [[1, 0, 0]], "coords": [], "elements": []}},
        {"jid": 902, "target": 0.5},
        {"jid": 903, "atoms": {**good["atoms"], "coords": good["atoms"]["coords"][:-1]}},
        {"jid": 904, "atoms": good["atoms"], "target": "high"},
        "not an object",
    ]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(records))
    entries = read_entries(path)
    assert len(entries) == 6
    assert entries[0].error is None
    assert all(e.error for e in entries[1:])
    assert [e.jid for e in entries[:5]] == [str(good["jid"]), "901", "902", "903", "904"]


def test_endpoints_listed_in_different_orders_are_matched():
    rec = dataset_records(3)[2]
    band = Band.from_jarvis_dict(rec["atoms"])
    ini, fin = band.endpoint(0), band.endpoint(-1)
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(fin))
    fin = Structure.from_sites([fin[i] for i in perm])
    rebuilt = Band.from_endpoints(ini, fin)
    assert _same_sites(rebuilt.structure, band.structure) < 1e-9
