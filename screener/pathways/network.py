"""The distinct hops of the working ion in one structure and their periodic network (:class:`HostPathways`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from screener.pathways.config import PathwayConfig
from screener.pathways.hop import Hop
from screener.pathways.percolation import Edge, percolation_barriers
from screener.pathways.supercell import hop_vector, supercell_matrix


@dataclass
class HostPathways:
    """The distinct hops of the working ion in one structure, and the periodic hop network.

    Attributes:
        structure: the cleaned unit cell (oxidation states and site properties removed).
        ion: element symbol of the working ion.
        hops: distinct hops x limits, ordered by length, then label, then limit.
        edges: the periodic graph of all symmetry-equivalent hops: ``(u, v, to_jimage,
            hop_label)`` where ``u``, ``v`` index :attr:`ion_sites` and ``to_jimage`` is the
            cell of ``v`` relative to ``u``.
        ion_sites: index in :attr:`structure` of each graph node.
        void_sites: indices in :attr:`structure` of working-ion sites that are empty sites
            (voids) of the real host, added as hop end points; empty unless ``sites="voids"``.
        spacegroup: international symbol and number found at ``config.symprec``.
        config: the parameters the hops were found with.
        cutoff_A: the hop-length cutoff actually used: ``config.cutoff``, or more for a host
            whose nearest ion-ion distance is longer (see :class:`PathwayConfig`).
    """

    structure: Structure
    ion: str
    hops: list[Hop]
    edges: list[Edge]
    ion_sites: list[int]
    spacegroup: tuple[str, int] = ("", 0)
    config: PathwayConfig = field(default_factory=PathwayConfig)
    cutoff_A: float = 0.0
    void_sites: list[int] = field(default_factory=list)

    @property
    def host_structure(self) -> Structure:
        """The real host: :attr:`structure` without the ion at its void sites."""
        if not self.void_sites:
            return self.structure
        s = self.structure.copy()
        s.remove_sites(self.void_sites)
        return s

    @property
    def formula(self) -> str:
        """Reduced formula of the real host."""
        return self.host_structure.composition.reduced_formula

    def site_kind(self, index: int) -> str:
        """``void`` or ``occupied`` for a working-ion site of :attr:`structure`."""
        return "void" if index in set(self.void_sites) else "occupied"

    def hop(self, hop_id: str) -> Hop:
        """The hop with this id.

        Raises:
            KeyError: when no hop has it.
        """
        for h in self.hops:
            if h.hop_id == hop_id:
                return h
        raise KeyError(hop_id)

    def supercell_matrix(self, hop: Hop, config: PathwayConfig | None = None) -> np.ndarray:
        """Integer supercell matrix of a hop's band (rows in vectors of :attr:`structure`)."""
        config = config or self.config
        return supercell_matrix(self.structure.lattice, hop_vector(self.structure, hop),
                                 config.min_width)

    def band_size(self, hop: Hop, config: PathwayConfig | None = None) -> int:
        """Number of sites of the hop's band (images + host), without building it."""
        config = config or self.config
        n_cells = round(abs(np.linalg.det(self.supercell_matrix(hop, config))))
        if hop.limit == "vacancy":  # the voids are empty; of the end points, the occupied ones go
            ends = (hop.isite_kind, hop.esite_kind).count("occupied")
            removed = len(self.void_sites) * n_cells + ends
        else:
            removed = len(self.ion_sites) * n_cells
        return len(self.structure) * n_cells - removed + config.n_images


    def percolation(self, barrier_by_hop_id: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """Percolation barriers per limit from a barrier per hop id.

        Args:
            barrier_by_hop_id: barrier (eV) of each hop id; missing hops never open.

        Returns:
            ``{limit: {"1D": x, "2D": y, "3D": z}}`` for each limit among :attr:`hops`.
        """
        out: dict[str, dict[str, float]] = {}
        for limit in dict.fromkeys(h.limit for h in self.hops):
            by_label = {h.hop_label: float(barrier_by_hop_id[h.hop_id])
                        for h in self.hops if h.limit == limit and h.hop_id in barrier_by_hop_id}
            out[limit] = percolation_barriers(self.edges, by_label)
        return out
