"""Known conductors keep the dimensionality their physics gives them (shipped model, default threshold).

Olivine LiFePO4 conducts in 1D along b (~0.3 eV); its 4.69 Å c-axis Li-Li hop cuts through a PO4
group and is above 2.5 eV in DFT and potential studies (Morgan et al. 2004; Islam et al. 2005):
the screen must not call it 2D. LiCoO2 conducts within its Li layers (2D), spinel LiMn2O4 through
the 8a-16c-8a diamond network (3D).
"""

from __future__ import annotations

import shutil

import pytest

from screener.screening.run import screen
from screener.sources.bundled import catalogue_dir


@pytest.fixture(scope="module")
def structures(tmp_path_factory):
    hosts = tmp_path_factory.mktemp("hosts")
    for name in ("LiFePO4", "LiCoO2", "LiMn2O4"):
        shutil.copy(catalogue_dir() / f"{name}.cif", hosts / f"{name}.cif")
    return screen("Li", str(hosts), synchronous=True).structures.set_index("material_id")


def test_olivine_is_1d(structures):
    lfp = structures.loc["LiFePO4.cif"]
    assert lfp["passes"] and lfp["dimensionality"] == 1
    assert lfp["percolation_1d_eV"] < 0.5
    assert lfp["p_percolates_2d"] < 0.5 and lfp["percolation_2d_eV"] > 0.65  # the c-axis hop is not open


def test_layered_oxide_is_2d(structures):
    lco = structures.loc["LiCoO2.cif"]
    assert lco["dimensionality"] == 2
    assert lco["percolation_2d_eV"] == lco["percolation_1d_eV"]  # the Li layer opens as a whole
    assert lco["p_percolates_3d"] < 0.5


def test_spinel_is_3d(structures):
    lmo = structures.loc["LiMn2O4.cif"]
    assert lmo["dimensionality"] == 3
    assert lmo["percolation_3d_eV"] == lmo["percolation_1d_eV"]
