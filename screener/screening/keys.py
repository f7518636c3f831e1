"""Content keys of screening work: equal keys give equal results.

Every host task (one structure, one working ion) has a key derived from its content (item, ion,
source, the structure itself, hop-finding settings, screener version), and every model batch a
key derived from the sorted ``(material, ion, hop_id)`` keys it holds, the model (version and
checksum of ``model.json``) and the settings.
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


def batch_key(keys: list[tuple[str, str, str]], model_fingerprint: str, settings_hash: str) -> str:
    """Key of a model batch: its sorted (material, ion, hop_id) keys, the model and the settings."""
    return content_hash({"format": KEY_FORMAT, "keys": sorted(list(k) for k in keys),
                 "model": model_fingerprint, "settings": settings_hash})[:32]


def settings_hash(config: PathwayConfig) -> str:
    """Short hash of the hop-finding settings: results found with other settings are not reused."""
    return content_hash({"pathways": pathway_settings(config)})[:16]
