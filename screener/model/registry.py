"""Where models live and what they are called: the shipped model, versions and fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from screener.core.assets import assets_dir
from screener.core.errors import ModelLoadError

DEFAULT_MODEL_NAME = "em-band-v3"


def models_dir() -> Path:
    """The folder of shipped models (``data/models`` in the repository, package data when installed)."""
    return assets_dir() / "models"


def default_model_dir() -> Path:
    """The model loaded when none is named: ``$SCREENER_MODEL_DIR``, else the shipped one."""
    env = os.environ.get("SCREENER_MODEL_DIR")
    return Path(env) if env else models_dir() / DEFAULT_MODEL_NAME


def model_meta_path(model_dir: str | None) -> Path:
    """``model.json`` of ``model_dir`` (default: :func:`default_model_dir`)."""
    return (Path(model_dir) if model_dir else default_model_dir()) / "model.json"


def model_version_of(model_dir: str | None) -> str:
    """``name@version`` of a model directory, read from its ``model.json``."""
    path = model_meta_path(model_dir)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"no readable model.json in {path.parent}: {exc}") from exc
    return f"{meta.get('name', 'unnamed')}@{meta.get('version', '0')}"


def model_fingerprint(model_dir: str | None) -> str:
    """Version and checksum of ``model.json`` (which holds the sha256 of every model file)."""
    path = model_meta_path(model_dir)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise ModelLoadError(f"no readable model.json in {path.parent}: {exc}") from exc
    return f"{model_version_of(model_dir)}#{digest}"
