"""One distinct hop of the working ion (:class:`Hop`), as data."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Hop:
    """One distinct hop of the working ion in one limit.

    Attributes:
        hop_id: stable id derived from the hop's content (12 hex digits).
        ion: element symbol of the working ion.
        limit: ``vacancy`` or ``dilute``.
        hop_label: index of the distinct hop (0 = shortest); the label of its edges in
            :attr:`HostPathways.edges`. Both limits of one hop share it.
        length_A: hop length in Å.
        multiplicity: number of symmetry-equivalent hops per unit cell.
        isite_frac: fractional coordinates of the initial site, wrapped into the cell
            ([-1e-4, 1 - 1e-4): a site at 0 stays near 0).
        esite_frac: fractional coordinates of the final site, not wrapped: ``esite - isite`` is
            the hop vector.
        isite_index: index of the initial site in :attr:`HostPathways.structure`.
        esite_index: index of the final site (its copy inside the unit cell).
        isite_wyckoff: Wyckoff label of the initial site (``""`` if unknown).
        esite_wyckoff: Wyckoff label of the final site.
        isite_kind: ``occupied`` (a site the ion holds) or ``void`` (an empty site, see
            :mod:`screener.pathways.voids`).
        esite_kind: the same for the final site.
    """

    hop_id: str
    ion: str
    limit: str
    hop_label: int
    length_A: float
    multiplicity: int
    isite_frac: tuple[float, float, float]
    esite_frac: tuple[float, float, float]
    isite_index: int = -1
    esite_index: int = -1
    isite_wyckoff: str = ""
    esite_wyckoff: str = ""
    isite_kind: str = "occupied"
    esite_kind: str = "occupied"

    def to_dict(self) -> dict[str, Any]:
        """The hop as a JSON-ready mapping."""
        d = asdict(self)
        d["isite_frac"] = list(self.isite_frac)
        d["esite_frac"] = list(self.esite_frac)
        return d
