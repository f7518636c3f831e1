"""Host folders for screening tests: bundled structures copied into a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from screener.sources.bundled import catalogue_dir


def bundled_host_dir(tmp_path_factory, names: list[str], extra: dict[str, bytes] | None = None) -> Path:
    """A fresh folder with the bundled CIFs ``names`` and ``extra`` files (name -> bytes)."""
    d = tmp_path_factory.mktemp("hosts")
    for name in names:
        shutil.copy(catalogue_dir() / name, d / name)
    for name, data in (extra or {}).items():
        (d / name).write_bytes(data)
    return d
