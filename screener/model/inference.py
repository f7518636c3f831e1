"""Running a BandALIGNN over graph pairs: the one forward loop that training and prediction share."""

from __future__ import annotations

import numpy as np
import torch

from screener.model.alignn import BandALIGNN
from screener.model.graphs import GraphPair, collate


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def predict_pairs(
    model: BandALIGNN, pairs: list[GraphPair], batch_size: int = 32, device: torch.device | None = None
) -> np.ndarray:
    """Predicted barriers (eV) of graph pairs, in batches."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    for i in range(0, len(pairs), batch_size):
        g, lg = collate(pairs[i : i + batch_size])
        out.append(model(g.to(device), lg.to(device)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)
