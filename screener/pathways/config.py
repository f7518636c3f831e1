"""Settings of hop finding and band building."""

from __future__ import annotations

import math
from dataclasses import dataclass

from screener.core.band import N_IMAGES

LIMITS: tuple[str, ...] = ("vacancy", "dilute")
#: Which sites hops join: the occupied ones, or those and the empty ones (voids).
SITES: tuple[str, ...] = ("occupied", "voids")


#: Default minimum perpendicular width (Å) of a band's supercell. The 559 training bands have a
#: minimum perpendicular width of median 9.63 Å (quartiles 7.97 / 10.63 Å, range 5.2-22.9 Å).
#: A supercell grown until it *reaches* the target overshoots it, so the default is rounded down.
DEFAULT_MIN_WIDTH = 9.5


PRIM_TOL = 0.01  # Å, tolerance of the primitive-cell search (translations must be exact)


WRAP_TOL = 1e-4  # fractional coordinates this close below 1 wrap to ~0


ROUND_DECIMALS = 3  # decimals of fractional coordinates and lengths in hop ids


@dataclass(frozen=True)
class PathwayConfig:
    """Parameters of hop finding and band building.

    Attributes:
        cutoff: maximum hop length in Å.
        max_cutoff: when no hop is shorter than ``cutoff``, hosts whose ion sites are farther
            apart (e.g. the cavities of Chevrel phases, 6.4-6.6 Å) get their nearest-neighbour
            hops instead: the cutoff is raised to 1.1 x the shortest ion-ion distance, up to this
            value (Å). Set it to ``cutoff`` (or less) to turn this off.
        min_width: minimum perpendicular width of a band's supercell in Å.
        max_band_sites: largest band (images + host) built; larger ones raise BandTooLargeError.
        limits: the limits to list each distinct hop in (``vacancy``, ``dilute``).
        min_distance: smallest allowed interatomic distance in Å.
        order_disordered: order partially occupied structures (lowest Ewald energy) instead of
            refusing them.
        symprec: symmetry tolerance in Å used to group equivalent hops.
        n_images: number of linear images of the ion in a band, end points included.
        primitive: work in the primitive cell (hops, coordinates, bands) when the input cell
            is a supercell of it (e.g. a centred conventional cell): faster, smaller bands.
        sites: ``occupied`` joins the sites the working ion occupies; ``voids`` adds the empty
            sites of the framework where it could sit (:mod:`screener.pathways.voids`): a host
            without the ion is screened with the ion inserted (dilute limit), and paths may
            turn through empty sites (site -> void -> site).
    """

    cutoff: float = 5.0
    max_cutoff: float = 7.0
    min_width: float = DEFAULT_MIN_WIDTH
    max_band_sites: int = 1000
    limits: tuple[str, ...] = LIMITS
    min_distance: float = 0.5
    order_disordered: bool = False
    symprec: float = 0.1
    n_images: int = N_IMAGES
    primitive: bool = True
    sites: str = "occupied"

    def __post_init__(self) -> None:
        if self.sites not in SITES:
            raise ValueError(f"sites must be one of {SITES}, got {self.sites!r}")
        if not (math.isfinite(self.cutoff) and self.cutoff > 0):
            raise ValueError(f"cutoff must be a positive number of Å, got {self.cutoff!r}")
        if not math.isfinite(self.max_cutoff):
            raise ValueError(f"max_cutoff must be a finite number of Å, got {self.max_cutoff!r}")
        if not (math.isfinite(self.min_width) and self.min_width >= 0):
            raise ValueError(f"min_width must be >= 0 Å, got {self.min_width!r}")
        if self.max_band_sites < 1:
            raise ValueError(f"max_band_sites must be positive, got {self.max_band_sites!r}")
        bad = [lim for lim in self.limits if lim not in LIMITS]
        if bad or not self.limits:
            raise ValueError(f"limits must be a non-empty subset of {LIMITS}, got {self.limits!r}")
        if self.symprec <= 0:
            raise ValueError(f"symprec must be positive, got {self.symprec!r}")
        if self.n_images < 2:
            raise ValueError(f"n_images must be at least 2, got {self.n_images!r}")
