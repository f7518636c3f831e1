"""Tests of the band descriptors and the pickle-free tree models on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from screener.core.band import Band
from screener.core.chemistry import anion_elements
from screener.model.descriptors import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    band_features,
    feature_matrix,
)
from screener.model.trees import BoostingModel


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """Fit on one OpenMP thread: oversubscribed cores make HistGradientBoosting crawl."""
    import sklearn.ensemble  # noqa: F401  (load its OpenMP runtime before limiting it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "em-dataset" / "train_bands.json"


def _rocksalt_band() -> Band:
    """Li hopping between two octahedral sites of a rock-salt MgO-like host (one Mg removed)."""
    a = 4.2
    host = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    host.make_supercell([2, 2, 2])
    # Remove two cations to open the start and end sites of a hop along [110]/2.
    start = np.array([0.0, 0.0, 0.0])
    end = np.array([0.25, 0.25, 0.0])
    drop = [i for i, s in enumerate(host) if s.specie.symbol == "Mg"
            and (np.allclose(s.frac_coords % 1, start) or np.allclose(s.frac_coords % 1, end))]
    assert len(drop) == 2
    host.remove_sites(drop)
    return Band.from_host(host, "Li", start, end)


@pytest.fixture(scope="module")
def dataset_bands() -> list[Band]:
    if not DATA.exists():
        pytest.skip(f"dataset not found at {DATA}")
    records = json.loads(DATA.read_text())[:3]
    return [Band.from_jarvis_dict(r["atoms"]) for r in records]


def test_dataset_features_finite_and_ordered(dataset_bands: list[Band]) -> None:
    for band in dataset_bands:
        f = band_features(band)
        assert list(f) == list(FEATURE_NAMES)
        assert np.all(np.isfinite(list(f.values())))
        assert f["hop_length"] == pytest.approx(band.hop_length)
    df = feature_matrix(dataset_bands)
    assert list(df.columns) == list(FEATURE_NAMES)
    assert df.shape == (3, len(FEATURE_NAMES))
    assert np.isfinite(df.to_numpy()).all()


def test_handmade_band_features() -> None:
    band = _rocksalt_band()
    f = band_features(band)
    assert list(f) == list(FEATURE_NAMES)
    assert np.all(np.isfinite(list(f.values())))
    assert f["hop_length"] == pytest.approx(band.hop_length)
    assert f["hop_length"] == pytest.approx(4.2 / np.sqrt(2))
    # Octahedral end points: 6 O at a/2.
    assert f["d_anion1_end"] == pytest.approx(2.1)
    assert f["cn_anion_end"] == 6
    # The straight [110] hop passes midway between two O at (1/2,0,0) and (0,1/2,0) of the cell:
    # at the midpoint (a/4, a/4, 0) both are sqrt(2) a/4 away.
    assert f["d_anion1_mid"] == pytest.approx(np.sqrt(2) * 4.2 / 4)
    assert f["seg_min_d_anion"] == pytest.approx(np.sqrt(2) * 4.2 / 4)
    assert f["cn_anion_mid"] == 2
    assert f["d_anion1_delta"] == pytest.approx(np.sqrt(2) * 4.2 / 4 - 2.1)
    assert f["ion_charge"] == 1
    assert f["frac_O"] == pytest.approx(32 / 62)
    assert f["wi_frac"] == 0.0


def test_framework_coordination_and_connectivity_of_rock_salt_and_olivine() -> None:
    # Rock salt: every framework cation (Mg) sits in an octahedron.
    f = band_features(_rocksalt_band())
    assert f["fw_cn_mean"] == 6
    assert (f["fw_frac_cn4"], f["fw_frac_cn6"], f["fw_frac_cn7"]) == (0.0, 1.0, 0.0)
    assert f["fw_cation_frac"] == pytest.approx(30 / 62)
    # MgO6 octahedra share edges with 12 others and corners with 6; with two Mg out (themselves
    # edge neighbours) 169 edge and 84 corner pairs remain among 30 Mg.
    assert f["fw_edge_neighbours"] == pytest.approx(2 * 169 / 30)
    assert f["fw_corner_neighbours"] == pytest.approx(2 * 84 / 30)
    # Olivine LiFePO4: half the framework cations are PO4 tetrahedra, half FeO6 octahedra; the Li
    # (the working ion) is not framework.
    from screener.sources.bundled import catalogue_dir

    lfp = Structure.from_file(catalogue_dir() / "LiFePO4.cif")
    li = [i for i, s in enumerate(lfp) if s.specie.symbol == "Li"]
    host = lfp.copy()
    host.remove_sites(li[:2])
    band = Band.from_host(host, "Li", lfp[li[0]].frac_coords, lfp[li[1]].frac_coords)
    f = band_features(band)
    assert f["fw_frac_cn4"] == 0.5 and f["fw_frac_cn6"] == 0.5
    assert f["fw_cn_mean"] == 5
    assert f["fw_cation_frac"] == pytest.approx(8 / 26)
    # Each FeO6 shares one edge with a PO4 and corners with 4 FeO6 and 4 PO4; each PO4 shares
    # corners with 4 FeO6.
    assert f["fw_edge_neighbours"] == pytest.approx(1.0)
    assert f["fw_corner_neighbours"] == pytest.approx(6.0)


def test_ion_midway_between_two_anions() -> None:
    # A single S pair along x; the ion hops along y through the point midway between them.
    lat = Lattice.cubic(12.0)
    host = Structure(lat, ["S", "S", "Zn"], [[0.4, 0.5, 0.5], [0.6, 0.5, 0.5], [0.0, 0.0, 0.0]])
    band = Band.from_host(host, "Na", [0.5, 0.35, 0.5], [0.5, 0.65, 0.5])
    f = band_features(band)
    assert f["d_anion1_mid"] == pytest.approx(1.2)
    assert f["seg_min_d_anion"] == pytest.approx(1.2)
    assert f["d_anion1_end"] == pytest.approx(np.hypot(1.2, 1.8))
    assert f["hop_length"] == pytest.approx(3.6)


def test_anion_guess() -> None:
    assert anion_elements(["Li", "Fe", "P", "O"]) == {"O"}
    assert anion_elements(["Li", "S", "O"]) == {"O"}  # sulphate S is a cation
    assert anion_elements(["Li", "P", "S", "Cl"]) == {"S", "Cl"}
    assert anion_elements(["Na", "V", "P", "O", "F"]) == {"O", "F"}
    assert anion_elements(["Li", "P"]) == {"P"}


def test_duplicate_endpoint_ion_is_ignored() -> None:
    band = _rocksalt_band()
    s = band.structure.copy()
    s.append("Li", s.frac_coords[band.n_images - 1])  # host lists the final site's ion too
    f_dup = band_features(Band(s))
    f = band_features(band)
    assert f_dup["d_host1_end"] == pytest.approx(f["d_host1_end"])


def test_descriptor_model_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, len(FEATURE_NAMES)))
    X[rng.random(X.shape) < 0.05] = np.nan
    y = np.exp(0.5 * np.nan_to_num(X[:, 0]) + 0.2 * rng.normal(size=120))
    for transform, loss in (("log1p", "squared_error"), ("none", "absolute_error")):
        model = BoostingModel(transform=transform, loss=loss, max_iter=40, max_leaf_nodes=8,
                                random_state=0)
        model.fit(X, y)
        p = model.predict(X)
        # The numpy tree walker reproduces sklearn's own prediction.
        from sklearn.ensemble import HistGradientBoostingRegressor

        ref = HistGradientBoostingRegressor(**model.params)
        ref.fit(X, np.log1p(y) if transform == "log1p" else y)
        rp = ref.predict(X)
        if transform == "log1p":
            rp = np.clip(np.expm1(rp), 0.0, None)
        np.testing.assert_allclose(p, rp, rtol=1e-12, atol=1e-12)

        path = tmp_path / f"model_{transform}.npz"
        model.save(path)
        loaded = BoostingModel.load(path)
        assert np.array_equal(loaded.predict(X), p)
        assert loaded.n_trees == model.n_trees == 40
        assert loaded.params == model.params
        assert loaded.feature_version == FEATURE_VERSION
        with np.load(path, allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)


def test_descriptor_model_on_bands() -> None:
    bands = [_rocksalt_band()] * 4
    model = BoostingModel(max_iter=5, min_samples_leaf=1, random_state=0)
    model.fit(bands, [0.5, 0.6, 0.7, 0.8])
    assert model.predict(bands).shape == (4,)


def test_forest_model_predicts_what_sklearn_predicts_and_round_trips(tmp_path):
    from sklearn.ensemble import ExtraTreesRegressor

    from screener.model.descriptors import FEATURE_NAMES
    from screener.model.trees import DEFAULT_FOREST_PARAMS, ForestModel, load_tree_model

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, len(FEATURE_NAMES)))
    y = np.abs(X[:, 0]) + 0.1 * rng.random(80)
    model = ForestModel(transform="none", n_estimators=25).fit(X, y)
    ref = ExtraTreesRegressor(**{**DEFAULT_FOREST_PARAMS, "n_estimators": 25}).fit(X, y)
    np.testing.assert_allclose(model.predict(X[:7]), ref.predict(X[:7]), rtol=0, atol=1e-12)
    model.save(tmp_path / "f.npz")
    again = load_tree_model(tmp_path / "f.npz")
    assert isinstance(again, ForestModel)
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


def test_forest_model_routes_a_value_next_to_a_threshold_as_sklearn_does():
    # sklearn compares float32 features with its thresholds: a float64 value just above a
    # threshold whose float32 rounding is at or below it goes left there, and must here too.
    from sklearn.ensemble import ExtraTreesRegressor

    from screener.model.descriptors import FEATURE_NAMES
    from screener.model.trees import DEFAULT_FOREST_PARAMS, ForestModel

    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, len(FEATURE_NAMES)))
    y = np.abs(X[:, 0]) + 0.1 * rng.random(60)
    for seed in range(50):  # a one-tree forest whose root threshold has such a neighbour
        params = {**DEFAULT_FOREST_PARAMS, "n_estimators": 1, "random_state": seed}
        ref = ExtraTreesRegressor(**params).fit(X, np.sqrt(y))
        root = ref.estimators_[0].tree_
        f, t = int(root.feature[0]), float(root.threshold[0])
        x = np.nextafter(t, np.inf)
        if np.float32(x) <= t:
            break
    else:
        pytest.fail("no threshold with a float32 neighbour above it")
    row = X[:1].copy()
    row[0, f] = x
    model = ForestModel(n_estimators=1, random_state=seed).fit(X, y)
    np.testing.assert_allclose(model.predict(row), ref.predict(row) ** 2, rtol=1e-12)


def test_forest_sqrt_transform_and_tree_spread(tmp_path):
    from sklearn.ensemble import ExtraTreesRegressor

    from screener.model.descriptors import FEATURE_NAMES
    from screener.model.trees import DEFAULT_FOREST_PARAMS, ForestModel, load_tree_model

    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, len(FEATURE_NAMES)))
    y = np.abs(X[:, 0]) + 0.2 * rng.random(120)
    model = ForestModel(n_estimators=30).fit(X[:100], y[:100])
    assert model.transform == "sqrt"
    # the shipped transform: fit on sqrt(Em), predict the square of the mean tree
    ref = ExtraTreesRegressor(**{**DEFAULT_FOREST_PARAMS, "n_estimators": 30}).fit(X[:100], np.sqrt(y[:100]))
    np.testing.assert_allclose(model.predict(X[100:]), ref.predict(X[100:]) ** 2, rtol=1e-12)
    pred, spread = model.predict_spread(X[100:])
    np.testing.assert_array_equal(pred, model.predict(X[100:]))
    # spread = std of the single trees' barriers, what sklearn's trees say one by one
    single = np.stack([t.predict(X[100:]) ** 2 for t in ref.estimators_])
    np.testing.assert_allclose(spread, single.std(axis=0), rtol=1e-10)
    assert np.all(spread > 0)
    # a target every tree fits exactly has no spread
    flat = ForestModel(n_estimators=10).fit(X[:50], np.full(50, 0.4))
    np.testing.assert_allclose(flat.predict_spread(X[:5])[1], 0.0, atol=1e-12)
    model.save(tmp_path / "f.npz")
    again = load_tree_model(tmp_path / "f.npz")
    np.testing.assert_array_equal(again.predict_spread(X)[1], model.predict_spread(X)[1])


def test_forest_median_aggregate_is_the_median_tree_and_round_trips(tmp_path):
    from sklearn.ensemble import ExtraTreesRegressor

    from screener.model.descriptors import FEATURE_NAMES
    from screener.model.trees import DEFAULT_FOREST_PARAMS, ForestModel, load_tree_model

    rng = np.random.default_rng(2)
    X = rng.normal(size=(90, len(FEATURE_NAMES)))
    y = np.abs(X[:, 0]) + 0.3 * rng.random(90) ** 3
    model = ForestModel(aggregate="median", n_estimators=31).fit(X[:70], y[:70])
    ref = ExtraTreesRegressor(**{**DEFAULT_FOREST_PARAMS, "n_estimators": 31}).fit(X[:70], np.sqrt(y[:70]))
    single = np.stack([t.predict(X[70:]) ** 2 for t in ref.estimators_])
    np.testing.assert_allclose(model.predict(X[70:]), np.median(single, axis=0), rtol=1e-12)
    mean_model = ForestModel(n_estimators=31).fit(X[:70], y[:70])
    assert not np.allclose(model.predict(X[70:]), mean_model.predict(X[70:]))
    pred, spread = model.predict_spread(X[70:])
    np.testing.assert_array_equal(pred, model.predict(X[70:]))
    np.testing.assert_allclose(spread, single.std(axis=0), rtol=1e-10)
    model.save(tmp_path / "m.npz")
    again = load_tree_model(tmp_path / "m.npz")
    assert again.aggregate == "median"
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    with pytest.raises(ValueError, match="aggregate"):
        ForestModel(aggregate="mode")
