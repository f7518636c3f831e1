"""Band graphs and the BandALIGNN network on their own: tags, caching, batching, shapes, save/load."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from screener.model.alignn import BandALIGNN, BandModelConfig
from screener.model.graphs import GraphCache, GraphConfig, band_graph, band_key, collate
from screener.model.inference import predict_pairs
from screener.model.predictor import BandPredictor
from screener.pathways.bands import build_band
from screener.pathways.config import PathwayConfig
from screener.pathways.search import find_pathways

SMALL = BandModelConfig(hidden_features=16, embedding_features=8, edge_bins=10, angle_bins=6,
                        alignn_layers=1, gcn_layers=1)


@pytest.fixture(scope="module")
def bands(licoo2):
    """The LiCoO2 hops in both limits: small bands (~50-100 sites)."""
    pw = find_pathways(licoo2, "Li", PathwayConfig(min_width=6.0))
    return [build_band(pw, h) for h in pw.hops[:3]]


def test_graph_tags_the_ion_images_and_keeps_the_neighbour_limit(bands):
    band = bands[0]
    config = GraphConfig()
    g, lg = band_graph(band, config)
    assert g.num_nodes == band.num_sites
    t = g.ndata["image_t"]
    assert torch.allclose(t[: band.n_images], torch.linspace(0, 1, band.n_images))
    assert (t[band.n_images:] == -1).all()
    assert g.ndata["atom_features"].shape == (band.num_sites, 92)
    lengths = torch.linalg.vector_norm(g.edata["r"], dim=1)
    assert float(lengths.max()) <= config.cutoff + 1e-6 and float(lengths.min()) > 0.3
    assert g.src.numel() <= band.num_sites * config.max_neighbors * 2  # k nearest, symmetrised
    assert lg.num_nodes == g.src.numel()  # one line-graph node per bond


def test_cache_builds_once_and_round_trips_through_disk(bands, tmp_path):
    band = bands[0]
    cache = GraphCache(GraphConfig(), tmp_path)
    first = cache.get(band)
    assert cache.get(band) is first
    (path,) = tmp_path.glob("*.pt")
    assert path.stem == band_key(band, GraphConfig())
    again = GraphCache(GraphConfig(), tmp_path).get(band)  # from disk
    assert torch.equal(again[0].src, first[0].src) and torch.equal(again[1].edata["h"], first[1].edata["h"])
    path.write_bytes(b"not a torch file")
    rebuilt = GraphCache(GraphConfig(), tmp_path).get(band)  # a corrupt file is rebuilt, not fatal
    assert torch.equal(rebuilt[0].dst, first[0].dst)


def test_other_graph_settings_get_another_key(bands):
    a = band_key(bands[0], GraphConfig())
    assert band_key(bands[0], dataclasses.replace(GraphConfig(), max_neighbors=8)) != a
    assert band_key(bands[1], GraphConfig()) != a


def test_collate_makes_one_disconnected_graph(bands):
    pairs = [band_graph(b) for b in bands]
    g, lg = collate(pairs)
    assert g.num_nodes == sum(p[0].num_nodes for p in pairs)
    assert lg.num_nodes == sum(p[1].num_nodes for p in pairs)
    assert g.batch_size == len(pairs)
    counts = torch.bincount(g.node_batch_id, minlength=len(pairs))
    assert counts.tolist() == [p[0].num_nodes for p in pairs]


@pytest.mark.parametrize("readout", ["images", "mean", "attention", "images+mean"])
def test_forward_gives_one_non_negative_barrier_per_band_whatever_the_batch(bands, readout):
    torch.manual_seed(0)
    model = BandALIGNN(dataclasses.replace(SMALL, readout=readout)).eval()
    pairs = [band_graph(b) for b in bands]
    together = predict_pairs(model, pairs, batch_size=len(pairs))
    alone = predict_pairs(model, pairs, batch_size=1)
    assert together.shape == (len(pairs),) and (together >= 0).all()
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_the_images_readout_reads_the_ion_not_only_the_host(bands):
    torch.manual_seed(0)
    model = BandALIGNN(SMALL).eval()
    g, lg = band_graph(bands[0])
    with torch.no_grad():
        base = model(g, lg)
        g.ndata["image_t"] = torch.full_like(g.ndata["image_t"], -1.0)
        g.ndata["image_t"][:1] = 0.0  # only one image tagged: another pooled set of atoms
        assert not torch.allclose(model(g, lg), base)


def test_gradients_reach_the_embeddings_and_the_head(bands):
    torch.manual_seed(0)
    model = BandALIGNN(SMALL)
    g, lg = collate([band_graph(b) for b in bands[:2]])
    model(g, lg).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    # Only the batch norms of the last edge and triplet updates feed nothing the readout reads.
    assert missing and all("bn_edges" in n for n in missing)
    for part in (model.atom_embedding, model.edge_embedding, model.angle_embedding, model.head):
        assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in part.parameters())


def test_config_round_trips_and_ignores_unknown_keys():
    assert BandModelConfig.from_dict({**SMALL.to_dict(), "from_the_future": 1}) == SMALL


def test_a_saved_predictor_loads_with_the_same_predictions(bands, tmp_path):
    torch.manual_seed(0)
    members = [BandALIGNN(SMALL).eval() for _ in range(2)]
    predictor = BandPredictor(members, GraphConfig(), [], 1.0, {"name": "unit-test", "version": "0"})
    predictor.save(tmp_path / "m")
    loaded = BandPredictor.load(tmp_path / "m")
    a, b = predictor.predict(bands), loaded.predict(bands)
    np.testing.assert_allclose(a.em, b.em, rtol=1e-6)
    np.testing.assert_allclose(a.uncertainty, b.uncertainty, rtol=1e-6, atol=1e-9)
    assert (a.uncertainty > 0).all()  # two different members disagree
