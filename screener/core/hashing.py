"""Content hashes: of JSON-ready objects and of structures."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def content_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def structure_hash(structure) -> str:
    """Content hash of a structure: lattice, species and coordinates (order-independent)."""
    rows = sorted(
        f"{site.species_string}:{','.join(f'{x % 1.0:.4f}' for x in site.frac_coords)}"
        for site in structure
    )
    lat = ",".join(f"{x:.4f}" for x in structure.lattice.matrix.ravel())
    return hashlib.sha256((lat + "|" + ";".join(rows)).encode()).hexdigest()[:16]


def input_fingerprint(structure) -> str:
    """Exact content hash of an input structure (full precision, site order included)."""
    h = hashlib.sha256()
    h.update(repr(structure.lattice.matrix.tolist()).encode())
    h.update("|".join(site.species_string for site in structure).encode())
    h.update(repr(np.asarray(structure.frac_coords).tolist()).encode())
    return h.hexdigest()
