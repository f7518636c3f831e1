"""Shared fixtures: known intercalation hosts built from crystallographic facts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pymatgen.util
import pytest
from pymatgen.core import Lattice, Structure

def pytest_configure(config: pytest.Config) -> None:
    """A developer's own screener config file (an API key picks the Materials Project as the
    default source) must not change what the tests screen: point it at a file that is not there."""
    os.environ["SCREENER_CONFIG"] = str(Path(config.rootpath) / ".no-screener-config-in-tests.toml")


# Structures that pymatgen ships (pymatgen/util/structures/*.json).
PMG_STRUCTURES = Path(pymatgen.util.__file__).parent / "structures"


@pytest.fixture(scope="session")
def lifepo4() -> Structure:
    """Olivine LiFePO4 (Pnma), as shipped with pymatgen (b = 6.07 Å is the 2nd lattice vector)."""
    return Structure.from_file(PMG_STRUCTURES / "LiFePO4.json")


@pytest.fixture(scope="session")
def li3v2po43() -> Structure:
    """NASICON-type Li3V2(PO4)3, 40 sites, as shipped with pymatgen."""
    return Structure.from_file(PMG_STRUCTURES / "Li3V2(PO4)3.json")


@pytest.fixture(scope="session")
def mgmn2o4() -> Structure:
    """Cubic spinel MgMn2O4, Fd-3m, a = 8.50 Å.

    pymatgen's "Fd-3m" is origin choice 1: Mg 8a (0,0,0), Mn 16d (5/8,5/8,5/8), O 32e (x,x,x)
    with x = 0.3875 (x = 0.2625 in origin choice 2; International Tables Vol. A, No. 227).
    Gives Mg-O = Mn-O = 2.02 Å and the 8a-8a hop (via the empty 16c site) a*sqrt(3)/4 = 3.68 Å.
    """
    x = 0.3875
    return Structure.from_spacegroup(
        "Fd-3m", Lattice.cubic(8.50), ["Mg", "Mn", "O"],
        [[0, 0, 0], [5 / 8, 5 / 8, 5 / 8], [x, x, x]],
    )


@pytest.fixture(scope="session")
def licoo2() -> Structure:
    """Layered LiCoO2 (R-3m, hexagonal axes): a = 2.8156 Å, c = 14.0542 Å.

    Cell from Akimoto, Gotoh, Oosawa, J. Solid State Chem. 141, 298 (1998); Li 3a (0,0,0),
    Co 3b (0,0,1/2), O 6c (0,0,0.2396) (the same as Co 3a, Li 3b, O z = 0.2604 shifted by c/2),
    which gives the reported Co-O 1.92 Å and Li-O 2.09 Å. The Li-Li hop is a = 2.82 Å.
    """
    return Structure.from_spacegroup(
        "R-3m", Lattice.hexagonal(2.8156, 14.0542), ["Li", "Co", "O"],
        [[0, 0, 0], [0, 0, 0.5], [0, 0, 0.2396]],
    )


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a test that runs the model in this process (``--sync``), like a Dask
    worker: far steadier on a shared machine."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_torch_thread_module() -> Iterator[None]:
    """:func:`one_torch_thread` for a whole module (``pytest.mark.usefixtures``)."""
    with _torch_threads(1):
        yield
