"""The barrier of one hop given as two end points, with the warnings a DFT user needs.

The band is built exactly as for the dataset's end-point form (:meth:`Band.from_endpoints`): sites
matched between the end points, the migrating ion the site that moves furthest (or of ``ion``),
the host the initial structure without it, 5 linear images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Structure

from screener.core.band import Band, displacements
from screener.model.predictor import BandPredictor

#: Above this uncertainty (eV) the host is called far from the training data: the members of the
#: model disagree as much as they do on the worst fifth of its own cross-validation entries.
FAR_UNCERTAINTY_EV = 0.5
#: An ion other than the migrating one that moves more than this (Å) between the end points.
MOVES_A = 0.5
#: End-point cells differ when a lattice vector changes by more than this fraction.
CELL_TOLERANCE = 0.005


@dataclass
class HopPrediction:
    """A prediction for one hop.

    Attributes:
        predicted_em_eV: predicted migration barrier.
        uncertainty_eV: its uncertainty (ensemble spread).
        hop_length_A: distance the migrating ion travels (minimum image).
        working_ion: the migrating element.
        warnings: what the user should know before trusting the number.
    """

    predicted_em_eV: float
    uncertainty_eV: float
    hop_length_A: float
    working_ion: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return asdict(self)


def cell_change(a: Structure, b: Structure) -> float:
    """Largest relative change of a lattice vector length between two cells."""
    la, lb = np.asarray(a.lattice.abc), np.asarray(b.lattice.abc)
    return float(np.max(np.abs(lb - la) / la))


def endpoint_warnings(initial: Structure, final: Structure, band: Band) -> list[str]:
    """Warnings about end points: cells that differ, more than one ion moving."""
    out = []
    change = cell_change(initial, final)
    if change > CELL_TOLERANCE:
        out.append(f"the end-point cells differ (a lattice vector changes by {change:.1%} > "
                   f"{CELL_TOLERANCE:.1%}): the band uses the initial cell")
    _, moved = displacements(initial, final)
    far = int((moved > MOVES_A).sum())
    if far > 1:
        out.append(f"{far} sites move by more than {MOVES_A} Å between the end points (the migrating ion is "
                   f"the one that moves most, {moved.max():.2f} Å); relaxed end points or a concerted hop?")
    return out


def predict_endpoints(initial: Structure, final: Structure, predictor: BandPredictor, ion: str | None = None,
                      max_training_hop_A: float | None = None) -> HopPrediction:
    """Predict the barrier of the hop from ``initial`` to ``final``.

    Args:
        initial, final: the end points (same sites; any order of sites within a species).
        predictor: the model.
        ion: the migrating element (default: the site that moves furthest).
        max_training_hop_A: the longest hop of the model's training data (warn beyond it).

    Raises:
        BandBuildError: the end points do not describe one hop.
    """
    band = Band.from_endpoints(initial, final, ion=ion)
    pred = predictor.predict([band])
    warnings = endpoint_warnings(initial, final, band)
    if max_training_hop_A is not None and band.hop_length > max_training_hop_A:
        warnings.append(f"the hop ({band.hop_length:.2f} Å) is longer than any in the training data "
                        f"({max_training_hop_A:.2f} Å)")
    unc = float(pred.uncertainty[0])
    if unc > FAR_UNCERTAINTY_EV:
        warnings.append(f"the host is far from the training data: uncertainty {unc:.2f} eV > {FAR_UNCERTAINTY_EV} eV")
    return HopPrediction(float(pred.em[0]), unc, round(float(band.hop_length), 4), band.ion, warnings)
