"""Gradient-boosted trees on band descriptors (LightGBM), saved as plain text (no pickle)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class GBMConfig:
    """LightGBM settings of the descriptor model.

    Attributes:
        objective: LightGBM objective (``huber``, ``l1`` or ``l2``).
        n_estimators: boosting rounds.
        learning_rate: shrinkage.
        num_leaves: leaves per tree.
        min_child_samples: smallest leaf.
        subsample: row subsampling per round.
        colsample: feature subsampling per tree.
        huber_alpha: where the Huber loss turns linear (eV).
        seed: random seed.
    """

    objective: str = "huber"
    n_estimators: int = 600
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 8
    subsample: float = 0.8
    colsample: float = 0.7
    huber_alpha: float = 0.3
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GBMConfig:
        """Build from a mapping, ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return asdict(self)


def fit_gbm(X: pd.DataFrame, y: np.ndarray, config: GBMConfig = GBMConfig()):
    """Fit a LightGBM regressor and return its ``Booster``."""
    import lightgbm as lgb

    params = {
        "objective": config.objective,
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "bagging_fraction": config.subsample,
        "bagging_freq": 1,
        "feature_fraction": config.colsample,
        "alpha": config.huber_alpha,
        "seed": config.seed,
        "deterministic": True,
        "num_threads": 1,
        "verbosity": -1,
    }
    data = lgb.Dataset(X.to_numpy(dtype=float), label=np.asarray(y, dtype=float),
                       feature_name=[str(c) for c in X.columns], free_raw_data=True)
    return lgb.train(params, data, num_boost_round=config.n_estimators)


def booster_to_string(booster) -> str:
    """The model as LightGBM's text format."""
    return booster.model_to_string()


def booster_from_string(text: str):
    """Load a LightGBM model from its text format."""
    import lightgbm as lgb

    return lgb.Booster(model_str=text)
