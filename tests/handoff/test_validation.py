"""NEB records cached per band: a band that runs past the time limit is cached as a time-out."""

from __future__ import annotations

import time

import numpy as np
import pytest

from screener.handoff import validation
from screener.handoff.neb import RefineSettings


def _band():
    from pymatgen.core import Lattice, Structure

    from screener.core.band import Band

    host = Structure(Lattice.cubic(6.0), ["O", "O"], [[0.5, 0.5, 0.5], [0.0, 0.5, 0.5]])
    return Band.from_host(host, "Li", np.array([0.3, 0.3, 0.3]), np.array([0.6, 0.3, 0.3]))


def test_a_slow_band_times_out_is_cached_and_is_retried_only_under_a_longer_limit(tmp_path, monkeypatch):
    calls = []

    def slow_then_bad(band, settings, on_step=None):
        """Optimiser steps of 20 ms; a band that gets to the end fails for a reason of its own."""
        calls.append(1)
        for k in range(25):
            time.sleep(0.02)
            if on_step is not None:
                on_step("NEB", k + 1, 1000)
        raise ValueError("the band's own failure")

    monkeypatch.setattr(validation, "refine_band", slow_then_bad)
    st, band = RefineSettings(), _band()
    (rec,) = validation.neb_records([band], st, tmp_path, band_limit_s=0.1)
    assert rec["status"] == "timeout" and rec["limit_s"] == 0.1 and np.isnan(rec["em_eV"])
    assert "stopped after" in rec["error"] and len(calls) == 1
    # the same limit reads the cached time-out; a shorter one too
    validation.neb_records([band], st, tmp_path, band_limit_s=0.1)
    validation.neb_records([band], st, tmp_path, band_limit_s=0.05)
    assert len(calls) == 1
    # a longer limit (or none) computes it again, and its record replaces the time-out
    (rec,) = validation.neb_records([band], st, tmp_path, band_limit_s=None)
    assert len(calls) == 2 and rec["status"] == "failed" and "own failure" in rec["error"]
    (rec,) = validation.neb_records([band], st, tmp_path, band_limit_s=None)
    assert len(calls) == 2 and rec["status"] == "failed"


def test_the_time_limit_leaves_a_quick_band_alone(monkeypatch, tmp_path):
    def quick(band, settings, on_step=None):
        if on_step is not None:
            on_step("relax initial", 1, 1000)
        raise ValueError("done")

    monkeypatch.setattr(validation, "refine_band", quick)
    (rec,) = validation.neb_records([_band()], RefineSettings(), tmp_path, band_limit_s=60)
    assert rec["status"] == "failed"
    with pytest.raises(ValueError):
        validation._timed_refine(_band(), RefineSettings(), None)


def test_records_cached_with_the_forward_barrier_are_read_as_highest_minus_lowest(tmp_path, monkeypatch):
    def never(band, settings, on_step=None):
        raise AssertionError("a cached band is not computed again")

    monkeypatch.setattr(validation, "refine_band", never)
    st, band = RefineSettings(), _band()
    # a record of the old kind: em_eV was max - energies[0], the last image is the lowest
    old = {"status": "ok", "em_eV": 0.4, "em_reverse_eV": 0.7, "energies_eV": [-1.0, -0.6, -1.3]}
    validation.write_json_atomic(old, tmp_path / f"{validation.record_key(band, st)}.json")
    (rec,) = validation.neb_records([band], st, tmp_path)
    assert rec["em_eV"] == pytest.approx(0.7) and rec["em_forward_eV"] == pytest.approx(0.4)
    assert rec["em_reverse_eV"] == pytest.approx(0.7)


def test_an_unreadable_cached_record_is_computed_again(tmp_path, monkeypatch):
    calls = []

    def fails(band, settings, on_step=None):
        calls.append(1)
        raise ValueError("the band's own failure")

    monkeypatch.setattr(validation, "refine_band", fails)
    st, band = RefineSettings(), _band()
    path = tmp_path / f"{validation.record_key(band, st)}.json"
    for bad in ("[1, 2]", '{"status": "ok", "em_eV": 0.4, "energies_eV": [-1.0, NaN, -1.3]}', "{not json"):
        path.write_text(bad)
        (rec,) = validation.neb_records([band], st, tmp_path)
        assert rec["status"] == "failed"
    assert len(calls) == 3
