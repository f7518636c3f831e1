"""The shipped model: loads by default, checks its files, and predicts known hops sensibly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from screener.model.predictor import BandPredictor
from screener.model.registry import default_model_dir, models_dir
from screener.pathways.bands import build_band
from screener.pathways.search import find_pathways
from screener.sources.bundled import catalogue_dir
from screener.sources.files import read_structure

SHIPPED = models_dir() / "em-band-v3"


def test_shipped_model_is_complete_and_small():
    meta = json.loads((SHIPPED / "model.json").read_text())
    assert meta["format_version"] == 1
    n_members = meta["n_members"] + meta["n_tree_models"]
    assert n_members >= 2, "the ensemble needs several members for an uncertainty"
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert total < 50 * 1024 * 1024
    assert (SHIPPED / "MODEL_CARD.md").read_text().count("sha256") >= 1
    # No copy of the training data ships with the model.
    assert not (SHIPPED / "oof_predictions.csv").exists()


def test_default_model_is_the_shipped_one(monkeypatch):
    monkeypatch.delenv("SCREENER_MODEL_DIR", raising=False)
    assert default_model_dir() == SHIPPED


@pytest.fixture(scope="module")
def predictor():
    return BandPredictor.load(SHIPPED)


def test_lifepo4_b_axis_hop_gets_a_finite_barrier_with_uncertainty(predictor):
    pw = find_pathways(read_structure(catalogue_dir() / "LiFePO4.cif"), "Li")
    hop = min((h for h in pw.hops if h.limit == "vacancy"), key=lambda h: h.length_A)
    assert hop.length_A == pytest.approx(3.03, abs=0.05)
    pred = predictor.predict([build_band(pw, hop)])
    assert np.isfinite(pred.em[0]) and np.isfinite(pred.uncertainty[0])
    assert pred.uncertainty[0] > 0
    # LiFePO4's 1D channel is a fast conductor (DFT ~0.2-0.5 eV); the model must say "good".
    assert 0.0 < pred.em[0] < 0.65


def test_prediction_is_deterministic_and_batch_independent(predictor):
    pw = find_pathways(read_structure(catalogue_dir() / "MgCr2O4.cif"), "Mg")
    bands = [build_band(pw, h) for h in pw.hops]
    a = predictor.predict(bands, batch_size=1)
    b = predictor.predict(bands, batch_size=8)
    np.testing.assert_allclose(a.em, b.em, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.uncertainty, b.uncertainty, rtol=1e-4, atol=1e-6)


def test_lifepo4_c_axis_hop_is_priced_above_the_channel_hop(predictor):
    """The 4.69 Å c-axis hop cuts through a PO4 group (DFT > 2.5 eV): never cheaper than the b channel."""
    pw = find_pathways(read_structure(catalogue_dir() / "LiFePO4.cif"), "Li")
    vac = sorted((h for h in pw.hops if h.limit == "vacancy"), key=lambda h: h.length_A)
    b_hop, c_hop = vac[0], vac[-1]
    assert c_hop.length_A == pytest.approx(4.69, abs=0.05)
    pred = predictor.predict([build_band(pw, b_hop), build_band(pw, c_hop)])
    assert pred.em[1] > 0.65 > pred.em[0]
    assert pred.uncertainty[1] > pred.uncertainty[0]  # and the model says it is unsure of it
