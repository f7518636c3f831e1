"""The training set a model carries: descriptors, targets and folds, so it can be refit anywhere.

``training_set.npz`` in a model directory holds the band descriptors (:func:`feature_matrix`) and
barriers the descriptor trees were fit on, each row's cross-validation fold, and where each row
came from (``literature`` for the dataset the model was trained on, the NEB folder for rows
``screener learn`` added). Plain arrays, read with ``allow_pickle=False``. It is derived from the
training data (the bands themselves, the literature dataset, are not shipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from screener.model.descriptors import FEATURE_NAMES, FEATURE_VERSION, feature_matrix
from screener.training.metrics import class_stratified_folds

FILE_NAME = "training_set.npz"


@dataclass
class TrainingSet:
    """Rows the descriptor trees were fit on.

    Attributes:
        X: descriptors, rows x :data:`FEATURE_NAMES`.
        y: barriers (eV).
        fold: cross-validation fold of each row (0 .. n_folds - 1).
        origin: where each row came from (``literature``, or a NEB folder).
        ion: the migrating element of each row.
        feature_version: :data:`FEATURE_VERSION` of the descriptors.
    """

    X: np.ndarray
    y: np.ndarray
    fold: np.ndarray
    origin: np.ndarray
    ion: np.ndarray
    feature_version: int = FEATURE_VERSION

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_folds(self) -> int:
        """Number of folds."""
        return int(self.fold.max()) + 1 if len(self.fold) else 0

    @property
    def max_hop_length_A(self) -> float:
        """The longest hop among the rows (Å)."""
        return float(self.X[:, FEATURE_NAMES.index("hop_length")].max())

    def extended(self, X: np.ndarray, y: np.ndarray, origin: list[str], ion: list[str]) -> TrainingSet:
        """These rows plus new ones; the new rows take folds round-robin."""
        start = len(self)
        fold = (np.arange(start, start + len(y)) % max(self.n_folds, 1)).astype(int)
        return TrainingSet(np.vstack([self.X, X]), np.concatenate([self.y, y]), np.concatenate([self.fold, fold]),
                           np.concatenate([self.origin, np.asarray(origin, dtype=str)]),
                           np.concatenate([self.ion, np.asarray(ion, dtype=str)]), self.feature_version)

    def save(self, directory: str | Path) -> Path:
        """Write ``training_set.npz`` into ``directory``."""
        path = Path(directory) / FILE_NAME
        np.savez_compressed(path, X=self.X, y=self.y, fold=self.fold, origin=self.origin.astype(str),
                            ion=self.ion.astype(str), feature_names=np.asarray(FEATURE_NAMES, dtype=str),
                            feature_version=np.asarray(self.feature_version))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> TrainingSet:
        """Read ``training_set.npz`` of a model directory.

        Raises:
            FileNotFoundError: the model carries no training set.
            ValueError: its descriptors are not this version's.
        """
        with np.load(Path(directory) / FILE_NAME, allow_pickle=False) as d:
            names = [str(x) for x in d["feature_names"]]
            if names != list(FEATURE_NAMES) or int(d["feature_version"]) != FEATURE_VERSION:
                raise ValueError("the training set's descriptors are of another version: retrain the model")
            return cls(d["X"].astype(float), d["y"].astype(float), d["fold"].astype(int), d["origin"].astype(str),
                       d["ion"].astype(str), int(d["feature_version"]))


def training_set_of(entries: list, n_folds: int = 5, seed: int = 0) -> TrainingSet:
    """The training set of dataset entries with bands and targets, folds as ``screener train`` draws them."""
    good = [e for e in entries if e.band is not None and e.target is not None]
    folds = class_stratified_folds([e.label for e in good], n_folds, seed)
    X = feature_matrix([e.band for e in good]).to_numpy(dtype=float)
    return TrainingSet(X, np.array([e.target for e in good], dtype=float), np.asarray(folds, dtype=int),
                       np.array(["literature"] * len(good)), np.array([e.band.ion for e in good]))
