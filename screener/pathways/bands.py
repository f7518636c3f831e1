"""The supercell band of one hop: host plus the migrating ion at linearly interpolated images."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

from screener.core.band import Band
from screener.core.errors import (
    BandBuildError,
    BandTooLargeError,
)
from screener.pathways.checks import is_ion_site
from screener.pathways.config import PathwayConfig
from screener.pathways.hop import Hop
from screener.pathways.network import HostPathways
from screener.pathways.supercell import hop_vector, wrap_frac


def build_band(pathways: HostPathways, hop: Hop, config: PathwayConfig | None = None) -> Band:
    """The supercell band of one hop in its limit: host plus ``n_images`` linear images.

    The supercell is the smallest diagonal multiple (of the cell or its LLL basis) whose
    perpendicular widths reach ``config.min_width``. The host is the supercell without the
    migrating ion (vacancy limit: without the ion's start and end sites, and with every void site
    empty; dilute limit: without any working ion).

    Raises:
        BandTooLargeError: the band would exceed ``config.max_band_sites``.
        BandBuildError: the hop's end points are not working-ion sites of the structure.
    """
    config = config or pathways.config
    s = pathways.structure
    ion = hop.ion
    sc_mat = pathways.supercell_matrix(hop, config)
    size = pathways.band_size(hop, config)
    if size > config.max_band_sites:
        n_cells = round(abs(np.linalg.det(sc_mat)))
        raise BandTooLargeError(
            f"hop {hop.hop_id} ({hop.limit}, {hop.length_A:.3f} Å) in "
            f"{pathways.formula}: reaching perpendicular widths of "
            f"{config.min_width} Å takes {n_cells} cells of {len(s)} sites, a band of {size} "
            f"sites > max_band_sites={config.max_band_sites}; raise max_band_sites or lower "
            "min_width"
        )
    sc = s.copy()
    sc.add_site_property("void", [i in set(pathways.void_sites) for i in range(len(s))])
    sc.make_supercell(sc_mat)
    ion_idx = np.array([i for i, site in enumerate(sc) if is_ion_site(site, ion)], dtype=int)
    if ion_idx.size == 0:
        raise BandBuildError(f"no {ion} site in the supercell")
    start_cart = s.lattice.get_cartesian_coords(np.asarray(hop.isite_frac, dtype=float))
    vec = hop_vector(s, hop)
    start = wrap_frac(sc.lattice.get_fractional_coords(start_cart))
    end = start + sc.lattice.get_fractional_coords(vec)
    i_start = _match_site(sc, ion_idx, start, "initial", hop)
    i_end = _match_site(sc, ion_idx, end, "final", hop)
    if i_start == i_end:
        raise BandBuildError(f"hop {hop.hop_id}: initial and final sites coincide in the supercell")
    if hop.limit == "vacancy":  # the real host: empty sites stay empty, the ion leaves its own
        voids = [int(i) for i in ion_idx if sc[int(i)].properties.get("void")]
        remove = [i_start, i_end, *voids]
    else:
        remove = ion_idx.tolist()
    sc.remove_sites(sorted(set(remove)))
    sc.remove_site_property("void")
    band = Band.from_host(sc, ion, start, end, n_images=config.n_images)
    if abs(band.hop_length - hop.length_A) > 1e-3:
        raise BandBuildError(
            f"hop {hop.hop_id}: band hop length {band.hop_length:.4f} Å differs from "
            f"{hop.length_A:.4f} Å (minimum image)"
        )
    band.meta.update(hop_id=hop.hop_id, limit=hop.limit, hop_label=hop.hop_label,
                     formula=pathways.formula, supercell_matrix=sc_mat.tolist())
    return band


def _match_site(sc: Structure, ion_idx: np.ndarray, frac: np.ndarray, which: str, hop: Hop) -> int:
    """Index of the working-ion site of ``sc`` at ``frac`` (minimum image, 0.25 Å tolerance)."""
    d = sc.lattice.get_all_distances(frac[None, :], sc.frac_coords[ion_idx])[0]
    k = int(np.argmin(d))
    if d[k] > 0.25:
        raise BandBuildError(
            f"hop {hop.hop_id}: no {hop.ion} site at the {which} position "
            f"{np.round(frac, 4).tolist()} (nearest {d[k]:.3f} Å away)"
        )
    return int(ion_idx[k])
