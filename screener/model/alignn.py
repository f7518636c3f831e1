"""BandALIGNN: alignn's pure-PyTorch ALIGNN layers with a readout focused on the migrating ion.

The layers (edge-gated graph convolutions on the bond graph and its line graph of bond angles)
come from ``alignn.models.alignn_atomwise_pure``; only the input tags and the readout are ours.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from alignn.models.alignn_atomwise_pure import (
    ALIGNNConvPure,
    EdgeGatedGraphConvPure,
    scatter_mean,
    scatter_sum,
)
from alignn.models.utils import MLPLayer, RBFExpansion
from alignn.torch_graph_builder import TorchGraph
from torch import nn

Readout = Literal["mean", "images", "attention", "images+mean"]


@dataclass(frozen=True)
class BandModelConfig:
    """Architecture of :class:`BandALIGNN`.

    Attributes:
        atom_input_features: size of the per-atom input (92 for CGCNN features).
        hidden_features: width of every hidden layer.
        embedding_features: width of the RBF embedding MLPs.
        edge_bins: radial basis functions for bond lengths (0 … ``cutoff`` Å).
        angle_bins: radial basis functions for bond-angle cosines.
        cutoff: largest bond length of the graphs in Å.
        alignn_layers: ALIGNN (bond graph + line graph) layers.
        gcn_layers: edge-gated graph convolution layers after them.
        readout: ``mean`` pools all atoms; ``images`` pools the ion's images;
            ``attention`` learns a weight per atom; ``images+mean`` concatenates both pools.
    """

    atom_input_features: int = 92
    hidden_features: int = 48
    embedding_features: int = 32
    edge_bins: int = 40
    angle_bins: int = 20
    cutoff: float = 8.0
    alignn_layers: int = 2
    gcn_layers: int = 2
    readout: Readout = "images"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BandModelConfig:
        """Build from a mapping, ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        return asdict(self)


class BandALIGNN(nn.Module):
    """Predicts the migration barrier (eV) of a batch of band graphs."""
    def __init__(self, config: BandModelConfig = BandModelConfig()):
        super().__init__()
        self.config = config
        h = config.hidden_features
        # 3 extra inputs: is-image flag, position t along the hop, sin(pi t) (peaks mid-hop).
        self.atom_embedding = MLPLayer(config.atom_input_features + 3, h)
        self.edge_embedding = nn.Sequential(
            RBFExpansion(vmin=0.0, vmax=config.cutoff, bins=config.edge_bins),
            MLPLayer(config.edge_bins, config.embedding_features),
            MLPLayer(config.embedding_features, h),
        )
        self.angle_embedding = nn.Sequential(
            RBFExpansion(vmin=-1.0, vmax=1.0, bins=config.angle_bins),
            MLPLayer(config.angle_bins, config.embedding_features),
            MLPLayer(config.embedding_features, h),
        )
        self.alignn = nn.ModuleList(ALIGNNConvPure(h, h) for _ in range(config.alignn_layers))
        self.gcn = nn.ModuleList(EdgeGatedGraphConvPure(h, h) for _ in range(config.gcn_layers))
        n_pool = 2 if config.readout == "images+mean" else 1
        if config.readout == "attention":
            self.gate = nn.Sequential(nn.Linear(h + 1, h), nn.SiLU(), nn.Linear(h, 1))
        self.head = nn.Sequential(nn.Linear(n_pool * h, h), nn.SiLU(), nn.Linear(h, 1))

    def _node_inputs(self, g: TorchGraph) -> torch.Tensor:
        t = g.ndata["image_t"]
        is_image = (t >= 0).float()
        tt = t.clamp_min(0.0)
        extra = torch.stack([is_image, tt * is_image, torch.sin(torch.pi * tt) * is_image], dim=1)
        return torch.cat([g.ndata["atom_features"], extra], dim=1)

    def embed(self, g: TorchGraph, lg: TorchGraph) -> torch.Tensor:
        """Node embeddings after all message-passing layers."""
        x = self.atom_embedding(self._node_inputs(g))
        y = self.edge_embedding(torch.linalg.vector_norm(g.edata["r"], dim=1))
        z = self.angle_embedding(lg.edata["h"])
        for layer in self.alignn:
            x, y, z = layer(g, lg, x, y, z)
        for layer in self.gcn:
            x, y = layer(g, x, y)
        return x

    def pool(self, g: TorchGraph, x: torch.Tensor) -> torch.Tensor:
        """One vector per band, by the configured readout."""
        bid = g.node_batch_id
        nb = g.batch_size
        mode = self.config.readout
        is_image = g.ndata["image_t"] >= 0
        if mode == "mean":
            return scatter_mean(x, bid, nb)
        if mode == "images":
            return scatter_mean(x[is_image], bid[is_image], nb)
        if mode == "images+mean":
            return torch.cat(
                [scatter_mean(x[is_image], bid[is_image], nb), scatter_mean(x, bid, nb)], dim=1
            )
        # attention: softmax over the atoms of each band
        logits = self.gate(torch.cat([x, is_image.float().unsqueeze(1)], dim=1)).squeeze(1)
        mx = torch.full((nb,), -torch.inf, device=x.device).scatter_reduce(
            0, bid, logits, reduce="amax", include_self=True
        )
        w = torch.exp(logits - mx[bid])
        w = w / scatter_sum(w, bid, nb)[bid]
        return scatter_sum(x * w.unsqueeze(1), bid, nb)

    def forward(self, g: TorchGraph, lg: TorchGraph) -> torch.Tensor:
        """Predicted barrier (eV, non-negative) per band in the batch."""
        x = self.embed(g, lg)
        return nn.functional.softplus(self.head(self.pool(g, x)).squeeze(1))
