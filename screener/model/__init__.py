"""The barrier model: band graphs, BandALIGNN, band descriptors, trees, and the predictor that blends them."""

from screener.model.alignn import BandALIGNN, BandModelConfig
from screener.model.descriptors import FEATURE_NAMES, band_features, feature_matrix
from screener.model.graphs import GraphCache, GraphConfig, band_graph
from screener.model.predictor import (
    BandPredictor,
    Prediction,
    check_model,
    load_predictor,
)
from screener.model.registry import (
    default_model_dir,
    model_fingerprint,
    model_version_of,
    models_dir,
)
from screener.model.trees import BoostingModel, ForestModel, load_tree_model

__all__ = [
    "BandALIGNN",
    "BandModelConfig",
    "BandPredictor",
    "BoostingModel",
    "FEATURE_NAMES",
    "ForestModel",
    "GraphCache",
    "GraphConfig",
    "Prediction",
    "band_features",
    "band_graph",
    "check_model",
    "default_model_dir",
    "feature_matrix",
    "load_predictor",
    "load_tree_model",
    "model_fingerprint",
    "model_version_of",
    "models_dir",
]
