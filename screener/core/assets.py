"""Files that ship with screener: the bundled host catalogue and the shipped models.

In the repository they live in the top-level ``data/`` folder; setuptools maps that folder to the
package ``screener.assets`` (see ``pyproject.toml``), so an installed wheel carries the same files
as package data and an editable install reads them from ``data/`` directly.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path


@lru_cache(maxsize=1)
def assets_dir() -> Path:
    """The folder holding ``hosts/`` and ``models/`` (the repository's ``data/`` folder)."""
    return Path(str(resources.files("screener.assets")))
