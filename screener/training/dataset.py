"""Reading migration-barrier datasets in band form or end-point form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from screener.core.band import Band, structure_from_jarvis_dict
from screener.core.errors import ScreenerError


@dataclass
class Entry:
    """One dataset entry: a band (or the error that stopped it) and its barrier if known.

    Attributes:
        jid: the entry id, as a string.
        band: the migration band, or None when it could not be built.
        target: the reference barrier in eV, or None.
        label: the structural class (used to draw folds, never as a feature).
        error: why the band could not be built, or None.
    """

    jid: str
    band: Band | None
    target: float | None = None
    label: str = ""
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def entry_from_record(record: Any, index: int = 0) -> Entry:
    """Build an :class:`Entry` from one JSON record, never raising.

    A record holds either ``atoms`` (band form: sites 0-4 are the images) or ``atoms_ini`` and
    ``atoms_fin`` (the end points of one hop). ``target`` is optional.
    """
    if not isinstance(record, dict):
        return Entry(jid=str(index), band=None, error=f"record is a {type(record).__name__}, not an object")
    jid = str(record.get("jid", index))
    label = str(record.get("class", ""))
    meta = {k: record[k] for k in ("sys_name", "formula") if k in record}
    target = record.get("target")
    try:
        target = None if target is None else float(target)
    except (TypeError, ValueError):
        return Entry(jid=jid, band=None, label=label, error=f"target is not a number: {target!r}")
    try:
        if "atoms" in record:
            band = Band.from_jarvis_dict(record["atoms"])
        elif "atoms_ini" in record and "atoms_fin" in record:
            band = Band.from_endpoints(
                structure_from_jarvis_dict(record["atoms_ini"]),
                structure_from_jarvis_dict(record["atoms_fin"]),
            )
        else:
            raise ScreenerError("record has neither 'atoms' nor 'atoms_ini'/'atoms_fin'")
    except ScreenerError as exc:
        return Entry(jid=jid, band=None, target=target, label=label, error=str(exc), meta=meta)
    except Exception as exc:  # noqa: BLE001 - any unreadable record becomes an error row
        return Entry(jid=jid, band=None, target=target, label=label,
                     error=f"{type(exc).__name__}: {exc}", meta=meta)
    return Entry(jid=jid, band=band, target=target, label=label, meta=meta)


def read_entries(path: str | Path) -> list[Entry]:
    """Read a dataset file: a JSON list of records in band or end-point form.

    Raises:
        ScreenerError: when the file itself is not a JSON list.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScreenerError(f"cannot read dataset {path}: {exc}") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ScreenerError(f"dataset {path} is not a JSON list of records")
    return [entry_from_record(rec, i) for i, rec in enumerate(data)]
