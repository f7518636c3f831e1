"""Training: datasets of DFT barriers, metrics, k-fold training of the members, cross-fitted blends, model cards."""

from screener.training.card import write_model_card
from screener.training.crossval import (
    choose_blend_weight,
    crossfit_blend,
    run_folds,
    tree_folds,
)
from screener.training.dataset import Entry, entry_from_record, read_entries
from screener.training.metrics import (
    GOOD_CONDUCTOR_EV,
    class_stratified_folds,
    regression_metrics,
)
from screener.training.trainer import ExperimentConfig, TrainConfig, train_model

__all__ = [
    "Entry",
    "ExperimentConfig",
    "GOOD_CONDUCTOR_EV",
    "TrainConfig",
    "choose_blend_weight",
    "class_stratified_folds",
    "crossfit_blend",
    "entry_from_record",
    "tree_folds",
    "read_entries",
    "regression_metrics",
    "run_folds",
    "train_model",
    "write_model_card",
]
