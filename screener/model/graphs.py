"""Band graphs: alignn's pure-PyTorch crystal graph plus line graph, with image tags.

Every band becomes the (graph, line graph) pair of alignn's ``build_pure_torch_graph`` (k nearest
neighbours within a cutoff, CGCNN atom features, bond angles on the line graph). Each node also
carries ``image_t``: the fractional position (0 … 1) of a migrating-ion image along the hop, or -1
for a host atom, so the model knows which 5 of up to ~1,000 sites carry the barrier's signal.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from alignn.torch_graph_builder import (
    TorchGraph,
    batch_torch_graph_pairs,
    build_pure_torch_graph,
)

from screener.core.band import Band

log = logging.getLogger(__name__)


GraphPair = tuple[TorchGraph, TorchGraph]


@dataclass(frozen=True)
class GraphConfig:
    """How a band becomes a graph.

    Attributes:
        cutoff: neighbour search radius in Å.
        max_neighbors: keep this many nearest neighbours per atom.
        three_body_cutoff: only bonds shorter than this (Å) form bond-angle triplets; the
            first coordination shell, which keeps the line graph ~2x smaller than at ``cutoff``.
        atom_features: alignn/jarvis atom feature set.
    """

    cutoff: float = 8.0
    max_neighbors: int = 12
    three_body_cutoff: float = 3.0
    atom_features: str = "cgcnn"

    def key(self) -> str:
        """A short string that identifies this configuration in cache keys."""
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:12]


def _jarvis_atoms(band: Band):
    from jarvis.core.atoms import Atoms

    s = band.structure
    return Atoms(
        lattice_mat=s.lattice.matrix,
        coords=s.frac_coords,
        elements=[site.specie.symbol for site in s],
        cartesian=False,
    )


def band_graph(band: Band, config: GraphConfig = GraphConfig()) -> GraphPair:
    """Build the (graph, line graph) pair of one band on the CPU.

    Args:
        band: the migration band.
        config: graph construction settings.

    Returns:
        alignn ``TorchGraph`` pair; ``g.ndata["image_t"]`` tags the ion's images.
    """
    with torch.no_grad():
        g, lg = build_pure_torch_graph(
            _jarvis_atoms(band),
            two_body_cutoff=config.cutoff,
            three_body_cutoff=config.three_body_cutoff,
            max_neighbors=config.max_neighbors,
            atom_features=config.atom_features,
        )
    n = g.num_nodes
    image_t = torch.full((n,), -1.0)
    image_t[: band.n_images] = torch.linspace(0.0, 1.0, band.n_images)
    # Keep only what the model reads: smaller caches and faster batching.
    g.ndata = {"atom_features": g.ndata["atom_features"].float(), "image_t": image_t}
    g.edata = {"r": g.edata["r"].float()}
    lg.ndata = {}
    lg.edata = {"h": lg.edata["h"].float()}
    return g, lg


def band_key(band: Band, config: GraphConfig) -> str:
    """Content hash of a band and the graph settings (cache key)."""
    s = band.structure
    h = hashlib.sha256()
    h.update(np.round(s.lattice.matrix, 6).tobytes())
    h.update(np.round(s.frac_coords, 6).tobytes())
    h.update(",".join(site.specie.symbol for site in s).encode())
    h.update(str(band.n_images).encode())
    h.update(config.key().encode())
    return h.hexdigest()[:24]


def _pack(pair: GraphPair) -> dict[str, torch.Tensor]:
    g, lg = pair
    return {
        "src": g.src, "dst": g.dst, "atom_features": g.ndata["atom_features"],
        "image_t": g.ndata["image_t"], "r": g.edata["r"],
        "lg_src": lg.src, "lg_dst": lg.dst, "h": lg.edata["h"],
    }


def _unpack(d: dict[str, torch.Tensor]) -> GraphPair:
    n = int(d["atom_features"].shape[0])
    g = TorchGraph(num_nodes=n, src=d["src"], dst=d["dst"],
                   ndata={"atom_features": d["atom_features"], "image_t": d["image_t"]},
                   edata={"r": d["r"]})
    lg = TorchGraph(num_nodes=int(d["src"].shape[0]), src=d["lg_src"], dst=d["lg_dst"],
                    ndata={}, edata={"h": d["h"]})
    return g, lg


class GraphCache:
    """Band graphs cached in memory and, optionally, on disk (one file per band).

    Args:
        config: graph construction settings.
        directory: where to keep graphs between runs; None keeps them in memory only.
    """

    def __init__(self, config: GraphConfig = GraphConfig(), directory: str | Path | None = None):
        self.config = config
        self.directory = Path(directory) if directory else None
        self._memory: dict[str, GraphPair] = {}

    def get(self, band: Band) -> GraphPair:
        """The graph pair of ``band``, built once."""
        key = band_key(band, self.config)
        if key in self._memory:
            return self._memory[key]
        pair = None
        path = self.directory / f"{key}.pt" if self.directory else None
        if path is not None and path.exists():
            try:
                pair = _unpack(torch.load(path, weights_only=True))
            except Exception as exc:  # noqa: BLE001 - a corrupt cache file is rebuilt
                log.warning("rebuilding corrupt graph cache file %s: %s", path.name, exc)
        if pair is None:
            pair = band_graph(band, self.config)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                torch.save(_pack(pair), tmp)
                tmp.replace(path)
        self._memory[key] = pair
        return pair


def collate(pairs: list[GraphPair]) -> GraphPair:
    """Batch graph pairs into one disconnected (graph, line graph) pair."""
    return batch_torch_graph_pairs(pairs)
