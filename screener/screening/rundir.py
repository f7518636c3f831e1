"""A finished run folder read back: its tables, ``run.json``, and where its structures came from."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from screener.core.errors import RunDirError
from screener.pathways.config import PathwayConfig

if TYPE_CHECKING:

    from screener.pathways.config import PathwayConfig


log = logging.getLogger(__name__)


REFINED_TABLE = "refined.parquet"


@dataclass
class RunData:
    """The tables and metadata of one run directory.

    Attributes:
        path: the run directory.
        info: the parsed ``run.json``.
        hops: ``hops.parquet``.
        structures: ``structures.parquet``.
        shortlist: ``shortlist.parquet``.
        refined: ``refined.parquet`` when ``screener refine`` ran, else None.
    """

    path: Path
    info: dict[str, Any]
    hops: pd.DataFrame
    structures: pd.DataFrame
    shortlist: pd.DataFrame
    refined: pd.DataFrame | None = None

    @property
    def source(self) -> str:
        """Name of the source the run screened (``bundled``, ``mp``, ``files``...)."""
        return str(self.info.get("source") or "")


def load_run(run_dir: str | Path) -> RunData:
    """Read the tables and ``run.json`` of a run directory.

    Raises:
        RunDirError: when the directory or one of its tables is missing or unreadable.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run directory")
    try:
        info = json.loads((path / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: no readable run.json ({exc}); is this a `screener run` output?") from exc
    tables: dict[str, pd.DataFrame] = {}
    for name in ("hops", "structures", "shortlist"):
        try:
            tables[name] = pd.read_parquet(path / f"{name}.parquet")
        except Exception as exc:  # noqa: BLE001 - missing file, truncated Parquet...
            raise RunDirError(f"{path}: cannot read {name}.parquet ({type(exc).__name__}: {exc})") from exc
    refined = None
    if (path / REFINED_TABLE).is_file():
        try:
            refined = pd.read_parquet(path / REFINED_TABLE)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: ignoring unreadable %s (%s)", path, REFINED_TABLE, exc)
    return RunData(path=path, info=info, refined=refined, **tables)


def pathway_config_of(info: dict[str, Any]) -> PathwayConfig:
    """The :class:`PathwayConfig` a run used, from its ``run.json`` (unknown keys are ignored)."""
    from dataclasses import fields


    raw = dict((info.get("config") or {}).get("pathways") or {})
    known = {f.name for f in fields(PathwayConfig)}
    extra = sorted(set(raw) - known)
    if extra:
        log.warning("run.json pathway settings not known to this version, ignored: %s", extra)
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in known}
    return PathwayConfig(**kwargs)


def source_spec_of(run: RunData, override: str | None = None) -> str:
    """What to pass to :func:`screener.sources.factory.make_source` to reopen the run's source.

    ``override`` (the ``--source`` option) wins; else a recorded path (``source_path`` /
    ``source_spec`` in ``run.json``, written by newer versions) or the source name when it
    needs no path (``bundled``, ``mp``).

    Raises:
        RunDirError: the run read structure files and ``run.json`` does not record where.
    """
    if override:
        return str(override)
    for key in ("source_path", "source_spec"):
        for where in (run.info, run.info.get("config") or {}):
            if where.get(key):
                return str(where[key])
    if run.source in ("bundled", "mp"):
        return run.source
    raise RunDirError(
        f"run.json records the source {run.source!r} but not its folder: pass --source FOLDER "
        "(the folder or file given to `screener run --source`)"
    )
