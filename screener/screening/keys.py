"""Content keys of screening work: equal keys give equal results.

Every host task (one structure, one working ion) has a key derived from its content (item, ion,
source, the structure itself, hop-finding settings, screener version), and every model batch a
key derived from the sorted ``(material, ion, hop_id)`` keys it holds with a hash of each hop's
band input (cell and hop), the model (version and checksum of ``model.json``) and the settings.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from screener._version import __version__
from screener.core.hashing import content_hash, input_fingerprint
from screener.pathways.config import PathwayConfig

#: Bump when host or batch parts change meaning: older parts are then recomputed.
KEY_FORMAT = 1


def pathway_settings(config: PathwayConfig) -> dict[str, Any]:
    """The hop-finding settings as a JSON-ready mapping."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def host_key(item: str, ion: str, source: str, structure, config: PathwayConfig) -> str:
    """Key of a host task: what it reads and how; equal keys give equal results."""
    return content_hash({"format": KEY_FORMAT, "screener": __version__, "item": item, "ion": ion,
                 "source": source, "structure": input_fingerprint(structure),
                 "pathways": pathway_settings(config)})[:32]


def cell_hash(cell: dict[str, Any]) -> str:
    """Hash of a host's cleaned cell (:class:`~screener.screening.tasks.BandSpec` ``cell``)."""
    return content_hash(cell)[:16]


def band_input_hash(cell: str, hop: dict[str, Any]) -> str:
    """Hash of what a hop's band is built from: its host's cell (:func:`cell_hash`) and the hop."""
    return content_hash({"cell": cell, "hop": hop})[:16]


def batch_key(keys: list[tuple[str, str, str]], model_fingerprint: str, settings_hash: str,
              inputs: list[str]) -> str:
    """Key of a model batch: its (material, ion, hop_id) keys with what their bands are built from.

    Args:
        keys: the batch's hop keys.
        model_fingerprint: the model (version and checksums).
        settings_hash: the hop-finding settings (:func:`settings_hash`).
        inputs: :func:`band_input_hash` of each hop, in the order of ``keys``: a hop whose cell or
            geometry changed (an edited input file that kept its hop ids, a screener that builds
            bands otherwise) is predicted again.
    """
    if len(inputs) != len(keys):
        raise ValueError(f"{len(keys)} keys, {len(inputs)} input hashes")
    return content_hash({"format": KEY_FORMAT, "hops": sorted([*k, h] for k, h in zip(keys, inputs)),
                         "model": model_fingerprint, "settings": settings_hash})[:32]


def settings_hash(config: PathwayConfig) -> str:
    """Short hash of the hop-finding settings: results found with other settings are not reused."""
    return content_hash({"pathways": pathway_settings(config)})[:16]
