"""The combination of the fast prediction with a NEB barrier: robust, calibrated, shipped."""

from __future__ import annotations

import numpy as np
import pytest

from screener.handoff.combine import (
    Combination,
    crossvalidate,
    load_combination,
    refined_status,
)


def test_a_neb_near_the_prediction_pulls_it_and_a_wild_one_is_discounted():
    c = Combination(a=1.0, sigma_neb=0.15, eps=0.1)
    refined, sigma, w = c.combine([0.5, 0.5, 0.5], [0.3, 0.3, 0.3], [0.7, 4.0, np.nan])
    assert 0.5 < refined[0] < 0.7 and w[0] > 0.9 and sigma[0] < 0.3  # agreement: pulled in, sharper
    assert abs(refined[1] - 0.5) < 0.05 and w[1] < 0.01  # 4 eV against 0.5 +- 0.3: an outlier
    assert refined[2] == 0.5 and w[2] == 0.0 and sigma[2] == pytest.approx(0.3)  # no NEB: the prediction


def test_a_confident_fast_model_moves_less():
    c = Combination(a=1.0, sigma_neb=0.2, eps=0.05)
    sure, unsure = c.combine([0.5, 0.5], [0.05, 0.5], [0.9, 0.9])[0]
    assert sure < unsure and 0.5 < sure


def test_fit_finds_an_accurate_neb_and_beats_both_on_synthetic_data():
    rng = np.random.default_rng(1)
    y = rng.gamma(2.0, 0.35, 400)
    sd = np.full_like(y, 0.3)
    fast = y + rng.normal(0, 0.3, y.size)
    neb = y + rng.normal(0, 0.1, y.size)
    wild = rng.random(y.size) < 0.1
    neb[wild] += rng.choice([-1, 1], wild.sum()) * rng.uniform(1.5, 4, wild.sum())
    c = Combination.fit(y, fast, sd, neb)
    assert c.sigma_neb <= 0.15 and c.a == pytest.approx(1.0, abs=0.3)
    oof = crossvalidate(y, fast, sd, neb)

    def mae(p):
        return np.mean(np.abs(p - y))

    def tail(p):
        return np.mean(np.abs(p - y) > 1)

    assert mae(oof) < mae(fast) and mae(oof) < mae(neb)
    assert tail(oof) < tail(neb)


def test_status_says_how_the_refined_barrier_was_made():
    assert refined_status(0.4, "", True, "chgnet") == "combined (chgnet)"
    assert refined_status(0.4, "", False, "chgnet").endswith("NEB not converged")
    assert refined_status(np.nan, "RuntimeError: boom") == "fast model only (NEB failed: RuntimeError)"


def test_shipped_combination_is_fitted_and_cross_validated():
    c, rec = load_combination("mace-mp-0")
    assert c.name == "mace-mp-0" and rec["n"] > 500
    assert rec["cv"]["mae"] < rec["fast_cv"]["mae"] and rec["cv"]["mae"] < rec["neb"]["mae"]
    assert load_combination("mace")[0] == c  # an alias finds its potential's fit
    generic, grec = load_combination("orb-v3")  # no validation of its own: the pooled fit
    assert generic.name == "generic" and grec["n"] >= rec["n"]
    # refine's default potential: the refined barrier beats both of its inputs, typical and tail errors
    chg, crec = load_combination("chgnet")
    assert chg.name == "chgnet" and crec["n"] > 200
    assert chg == Combination.from_dict(crec["params"]) == Combination.from_dict(chg.to_dict())
    assert chg.scale < 1  # CHGNet's barriers come out low: the fit scales them back
    assert load_combination("a-potential-no-longer-known")[0].name == "generic"
    for key in ("mae", "share_gt_1eV"):
        assert crec["cv"][key] < crec["fast_cv"][key] and crec["cv"][key] < crec["neb"][key]


def test_an_unknown_fast_uncertainty_lets_the_neb_decide():
    c = Combination(a=1.0, sigma_neb=0.15, eps=0.1)
    refined, sigma, w = c.combine([0.5], [np.nan], [1.0])
    assert refined[0] > 0.9 and w[0] > 0.9 and sigma[0] < 0.3


def test_a_softened_potential_is_scaled_back_and_the_fit_finds_the_softening():
    soft = Combination(a=1.0, sigma_neb=0.05, eps=0.01, scale=0.8)
    refined, _, w = soft.combine([1.0], [0.5], [0.8])
    assert refined[0] == pytest.approx(1.0, abs=0.01) and w[0] > 0.99  # 0.8 from a 0.8-soft potential: 1.0
    assert Combination(a=1.0, sigma_neb=0.05, eps=0.01).combine([1.0], [0.5], [0.8])[0][0] < 0.82
    rng = np.random.default_rng(2)
    y = rng.gamma(2.0, 0.4, 300)
    fast = y + rng.normal(0, 0.3, y.size)
    neb = 0.8 * y + rng.normal(0, 0.05, y.size)  # barriers 20% low, as a softened surface gives
    assert Combination.fit(y, fast, np.full_like(y, 0.3), neb).scale == pytest.approx(0.8)
    # files written before the scale existed read as unscaled
    assert Combination.from_dict({"a": 0.5, "sigma_neb": 0.2, "eps": 0.1}).scale == 1.0
