"""``screener evaluate --potential``: NEB barrier, combined barrier and status beside every prediction."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from screener.cli.main import main
from screener.handoff.combine import load_combination
from screener.handoff.neb import RefineSettings
from screener.handoff.potentials import potential_version
from screener.handoff.validation import record_key
from screener.pathways.bands import build_band
from screener.pathways.search import find_pathways
from screener.sources.bundled import catalogue_dir
from screener.sources.files import read_structure

pytestmark = pytest.mark.skipif(importlib.util.find_spec("chgnet") is None, reason="chgnet not installed")


@pytest.fixture(scope="module")
def bands():
    pw = find_pathways(read_structure(catalogue_dir() / "LiFePO4.cif"), "Li")
    return [build_band(pw, h) for h in sorted(pw.hops, key=lambda h: (h.limit, h.length_A))[:3]]


def _write_cache(cache, band, rec):
    st = RefineSettings(potential="chgnet")
    cache.mkdir(parents=True, exist_ok=True)
    rec = {**rec, "potential": "chgnet", "potential_version": potential_version("chgnet")}
    (cache / f"{record_key(band, st)}.json").write_text(json.dumps(rec))


def test_every_entry_gets_a_refined_barrier_and_a_status(bands, tmp_path, capsys):
    data = tmp_path / "data.json"
    records = [{"jid": f"h{i}", "atoms": b.to_jarvis_dict(), "target": 0.3} for i, b in enumerate(bands)]
    data.write_text(json.dumps(records))
    cache = tmp_path / "neb"
    # NEB records as a finished run leaves them: one good, one failed (the third is too large to run)
    _write_cache(cache, bands[0], {"status": "ok", "em_eV": 0.41, "converged": True})
    _write_cache(cache, bands[1], {"status": "failed", "em_eV": float("nan"), "error": "RuntimeError: diverged"})
    max_sites = max(bands[0].num_sites, bands[1].num_sites)
    assert bands[2].num_sites > max_sites
    out = tmp_path / "eval.csv"
    rc = main(["evaluate", "--data", str(data), "--out", str(out), "--potential", "chgnet",
               "--neb-cache", str(cache), "--max-sites", str(max_sites)])
    assert rc == 0  # every entry got a prediction, NEB or not
    df = pd.read_csv(out).set_index("jid")
    assert ["predicted_em_eV", "uncertainty_eV", "neb_em_eV", "refined_em_eV", "refined_uncertainty_eV",
            "refined_status"] == [c for c in df.columns if c.endswith(("_eV", "status")) and c != "target_em_eV"]
    good, failed, skipped = df.loc["h0"], df.loc["h1"], df.loc["h2"]
    c, _ = load_combination("chgnet")
    expect = c.combine(good["predicted_em_eV"], good["uncertainty_eV"], 0.41)
    assert good["neb_em_eV"] == 0.41 and good["refined_em_eV"] == pytest.approx(expect[0][0])
    assert good["refined_status"].startswith("combined")
    for row, why in ((failed, "NEB failed: RuntimeError"), (skipped, "NEB not run")):
        assert np.isnan(row["neb_em_eV"]) and row["refined_em_eV"] == pytest.approx(row["predicted_em_eV"])
        assert why in row["refined_status"]
    text = capsys.readouterr().out
    metrics = json.loads(text[text.index("{"):text.rindex("}") + 1])
    assert {"predicted", "refined", "neb"} <= set(metrics)


def test_unknown_potential_is_refused_before_any_work(bands, tmp_path, caplog):
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"jid": "h0", "atoms": bands[0].to_jarvis_dict()}]))
    out = tmp_path / "eval.csv"
    assert main(["evaluate", "--data", str(data), "--out", str(out), "--potential", "no-such-mlip"]) == 2
    assert "unknown potential" in caplog.text and not out.exists()
