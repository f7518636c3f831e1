"""NEB barriers of many bands with one potential, each cached by content so reruns are free.

:func:`neb_records` refines every band it is given (:func:`~screener.handoff.neb.refine_band`) and
keeps one small JSON record per band in a cache folder, named by a hash of the band, the settings
that change the result and the potential's version: a rerun (or a run resumed after an
interruption) reads the records it has and computes only the rest. A band whose NEB fails for a
reason of its own (a :class:`ScreenerError` or ``ValueError``) gets a record with the error, so
it is not retried with the same settings; other failures (out of memory, a device error) are
retried by the next run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from screener.core.band import migration_barrier
from screener.core.errors import ScreenerError
from screener.core.files import write_json_atomic
from screener.core.hashing import content_hash, input_fingerprint
from screener.handoff.neb import NebResult, RefineSettings, refine_band, settings_dict
from screener.handoff.potentials import potential_version

if TYPE_CHECKING:
    from screener.core.band import Band

log = logging.getLogger(__name__)

#: Settings that do not change a NEB's result, to its force tolerance (left out of the cache key).
_NOT_IN_KEY = ("device", "threads", "batched", "symmetry")


def record_key(band: Band, settings: RefineSettings) -> str:
    """Cache key of one band's NEB: the band's exact content, the settings and the potential version."""
    st = {k: v for k, v in settings_dict(settings).items() if k not in _NOT_IN_KEY}
    return content_hash({"band": input_fingerprint(band.structure), "settings": st,
                         "potential": potential_version(settings.potential)})[:24]


def summarise(res: NebResult) -> dict[str, Any]:
    """The JSON record of a NEB: barrier, energies and the quality signals a combination may use."""
    e = np.asarray(res.energies_eV, dtype=float)
    return {
        "status": "ok",
        "em_eV": float(res.em_eV),
        "em_forward_eV": float(res.em_forward_eV),
        "em_reverse_eV": float(res.em_reverse_eV),
        "energies_eV": [float(x) for x in e],
        "saddle_index": int(np.argmax(e)),
        "asymmetry_eV": float(abs(e[0] - e[-1])),
        "relax_initial_eV": float(res.initial.start_energy_eV - res.initial.energy_eV),
        "relax_final_eV": float(res.final.start_energy_eV - res.final.energy_eV),
        "ion_shift_initial_A": float(res.ion_shift_A[0]),
        "ion_shift_final_A": float(res.ion_shift_A[1]),
        "neb_max_force_eV_A": float(res.max_force_eV_A),
        "neb_steps": int(res.steps),
        "relax_steps": int(res.initial.steps + res.final.steps),
        "final_from_symmetry": bool(res.final.from_symmetry),
        "evaluations": int(res.evaluations),
        "converged": bool(res.converged),
        "n_atoms": len(res.images[0]),
        "seconds": float(res.seconds),
    }


class BandTimeLimit(ScreenerError):
    """A band's NEB ran past the time limit of one band."""


def _timed_refine(band: Band, settings: RefineSettings, limit_s: float | None) -> NebResult:
    """:func:`refine_band`, stopped by :class:`BandTimeLimit` after ``limit_s`` seconds (at an optimiser step)."""
    if limit_s is None:
        return refine_band(band, settings)
    t0 = time.perf_counter()

    def check(phase: str, step: int, steps: int) -> None:
        if time.perf_counter() - t0 > limit_s:
            raise BandTimeLimit(f"stopped after {limit_s:.0f} s ({phase}, step {step})")

    return refine_band(band, settings, check)


def _current(rec: dict[str, Any]) -> dict[str, Any]:
    """A cached record in today's terms: ``em_eV`` is the barrier of its energies (max - min).

    Records cached before 2026-12-07 hold the forward barrier (``max - energies[0]``) in
    ``em_eV``; they keep their energies, so the barrier is derived from those.
    """
    e = rec.get("energies_eV")
    if rec.get("status") == "ok" and e:
        rec["em_eV"] = migration_barrier(e)
        rec["em_forward_eV"] = float(max(e) - e[0])
    return rec


def _stale(rec: dict[str, Any], limit_s: float | None) -> bool:
    """A cached time-out is computed again when the limit is now longer (or gone)."""
    return rec.get("status") == "timeout" and (limit_s is None or limit_s > float(rec.get("limit_s", 0.0)))


def neb_records(bands: Sequence[Band], settings: RefineSettings, cache_dir: str | Path,
                on_done: Callable[[int, dict[str, Any]], None] | None = None,
                budget_s: float | None = None, band_limit_s: float | None = None) -> list[dict[str, Any] | None]:
    """NEB records of ``bands`` (cached ones read, the others computed and cached).

    Args:
        bands: the bands.
        settings: potential and NEB settings.
        cache_dir: the cache folder (created).
        on_done: called with each band's index and record as it is read or computed.
        budget_s: stop computing new records after this many seconds (cached ones are still
            read); bands left are ``None``.
        band_limit_s: stop one band's NEB after this many seconds; its record (``status``
            ``timeout``) is cached and computed again only under a longer limit.

    Returns:
        One record per band (``status`` ``ok``, ``failed`` or ``timeout``), or ``None`` where the
        budget ran out.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    out: list[dict[str, Any] | None] = []
    for i, band in enumerate(bands):
        path = cache / f"{record_key(band, settings)}.json"
        rec = None
        if path.exists():
            try:
                rec = json.loads(path.read_text())
                rec = _current(rec) if isinstance(rec, dict) else None
            except (OSError, ValueError):  # unreadable, not JSON, or energies that are not finite
                rec = None
            if rec is not None and _stale(rec, band_limit_s):
                rec = None
        if rec is None and (budget_s is None or time.perf_counter() - t0 < budget_s):
            keep = True
            try:
                rec = summarise(_timed_refine(band, settings, band_limit_s))
            except BandTimeLimit as exc:
                rec = {"status": "timeout", "error": str(exc), "em_eV": math.nan, "limit_s": float(band_limit_s)}
                log.warning("band %d: %s", i, exc)
            except Exception as exc:  # noqa: BLE001 - one band's failure is its record
                rec = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                       "em_eV": math.nan}
                # The band's own failures (bad geometry, a potential that cannot treat it) are
                # kept; the machine's (out of memory, CUDA) are retried by the next run.
                keep = isinstance(exc, (ScreenerError, ValueError, FloatingPointError))
                log.warning("band %d: NEB failed: %s", i, rec["error"])
            rec.update(potential=settings.potential, potential_version=potential_version(settings.potential))
            if keep:
                write_json_atomic(rec, path)
        out.append(rec)
        if rec is not None and on_done is not None:
            on_done(i, rec)
    return out
