"""Sources of candidate host structures behind one small interface.

- ``bundled``: the catalogue of well-known intercalation hosts (:mod:`screener.sources.bundled`).
- a path: a folder or file of CIF, POSCAR or pymatgen-JSON structures (:mod:`screener.sources.files`).
- ``mp``: the Materials Project through ``mp-api`` (:mod:`screener.sources.mp`, needs an API key:
  ``MP_API_KEY`` or ``mp_api_key`` in the config file).
"""

from screener.sources.base import DeltaSource, HostItem, Source
from screener.sources.bundled import (
    BundledSource,
    HostRecord,
    catalogue_dir,
    load_catalogue,
)
from screener.sources.factory import make_source
from screener.sources.files import PathSource, read_structure
from screener.sources.incremental import SnapshotSource

__all__ = [
    "BundledSource",
    "DeltaSource",
    "HostItem",
    "HostRecord",
    "PathSource",
    "SnapshotSource",
    "Source",
    "catalogue_dir",
    "load_catalogue",
    "make_source",
    "read_structure",
]
