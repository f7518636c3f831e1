"""Pathways: the distinct hops of the working ion, their bands and the percolation of their network.

:func:`find_pathways` checks a structure (:mod:`~screener.pathways.checks`), finds its distinct hops
with pymatgen-analysis-diffusion (:mod:`~screener.pathways.search`) and returns a
:class:`HostPathways`; :func:`build_band` makes the supercell band of one hop for the model.
"""

from screener.pathways.bands import build_band
from screener.pathways.checks import check_structure
from screener.pathways.config import DEFAULT_MIN_WIDTH, LIMITS, PathwayConfig
from screener.pathways.hop import Hop
from screener.pathways.network import HostPathways
from screener.pathways.percolation import percolation_barriers, percolation_dimension
from screener.pathways.search import find_pathways, migration_graph

__all__ = [
    "DEFAULT_MIN_WIDTH",
    "Hop",
    "HostPathways",
    "LIMITS",
    "PathwayConfig",
    "build_band",
    "check_structure",
    "find_pathways",
    "migration_graph",
    "percolation_barriers",
    "percolation_dimension",
]
