"""The shipped barrier predictor: an ensemble of band graph models blended with descriptor trees.

A model directory holds ``model.json`` (versions, configurations, blend weight, sha256 of every
file), ``weights.pt`` (the graph models' state dicts, read with ``weights_only=True``),
``trees_<i>.npz`` (descriptor tree models as plain arrays, read with ``allow_pickle=False``)
and ``MODEL_CARD.md``.

Prediction of member k = w * graph_k + (1 - w) * trees_k. The reported value is the mean over the
members; the uncertainty is the standard deviation of the mixture of all graph and tree models:
sqrt(w var(graph) + (1 - w) var(trees) + w (1 - w) (mean graph - mean trees)^2), where var(trees)
holds both the spread between the fold models and, for extra-trees, the spread of their single
trees.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from screener.core.band import Band
from screener.core.errors import ModelLoadError
from screener.model.alignn import BandALIGNN, BandModelConfig
from screener.model.descriptors import feature_matrix
from screener.model.graphs import GraphCache, GraphConfig
from screener.model.inference import predict_pairs
from screener.model.registry import default_model_dir, model_meta_path
from screener.model.trees import load_tree_model, predict_with_spread

FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Prediction:
    """Barriers of a list of bands (eV): the blend, its uncertainty and its two parts."""
    em: np.ndarray
    uncertainty: np.ndarray
    graph: np.ndarray
    trees: np.ndarray


class BandPredictor:
    """Ensemble of :class:`BandALIGNN` members, optionally blended with descriptor trees.

    Args:
        members: trained graph models (one per fold).
        graph_config: how bands become graphs (must match training).
        tree_models: descriptor tree models (:class:`BoostingModel`, one per fold), or empty.
        graph_weight: blend weight of the graph models (1.0 = graph only).
        info: free-form metadata (name, version, metrics) written to ``model.json``.
    """

    def __init__(
        self,
        members: list[BandALIGNN],
        graph_config: GraphConfig,
        tree_models: list[Any] | None = None,
        graph_weight: float = 1.0,
        info: dict[str, Any] | None = None,
    ):
        if not members and not tree_models:
            raise ModelLoadError("a predictor needs at least one model")
        self.members = members
        self.graph_config = graph_config
        self.tree_models = list(tree_models or [])
        self.graph_weight = float(graph_weight) if self.tree_models else 1.0
        if not members:
            self.graph_weight = 0.0
        self.info = dict(info or {})
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        """Model name."""
        return str(self.info.get("name", "unnamed"))

    @property
    def version(self) -> str:
        """Model version string (name@version)."""
        return f"{self.name}@{self.info.get('version', '0')}"

    def to(self, device: str | torch.device) -> BandPredictor:
        """Move the graph models to ``device``."""
        self.device = torch.device(device)
        for m in self.members:
            m.to(self.device)
        return self

    # ------------------------------------------------------------------ prediction
    def predict(
        self, bands: list[Band], batch_size: int = 32, cache: GraphCache | None = None,
        features: pd.DataFrame | None = None,
    ) -> Prediction:
        """Predict the barriers of ``bands`` in batches.

        Args:
            bands: migration bands.
            batch_size: bands per forward pass.
            cache: graph cache to reuse (a fresh in-memory one when None).
            features: the bands' descriptors (:func:`feature_matrix` rows in ``bands`` order), when
                already computed.
        """
        n = len(bands)
        if n == 0:
            z = np.zeros(0)
            return Prediction(z, z, z, z)
        w = self.graph_weight
        if self.members:
            cache = cache or GraphCache(self.graph_config)
            pairs = [cache.get(b) for b in bands]
            g_all = np.stack([predict_pairs(m, pairs, batch_size, self.device) for m in self.members])
        else:
            g_all = np.zeros((1, n))
        if self.tree_models:

            X = feature_matrix(bands) if features is None else features
            both = [predict_with_spread(b, X) for b in self.tree_models]
            t_all = np.stack([p for p, _ in both])
            t_within = np.mean([sd**2 for _, sd in both], axis=0)
        else:
            t_all, t_within = np.zeros((1, n)), np.zeros(n)
        g_mean, t_mean = g_all.mean(0), t_all.mean(0)
        em = np.clip(w * g_mean + (1 - w) * t_mean, 0.0, None)
        var = (w * g_all.var(0) + (1 - w) * (t_all.var(0) + t_within)
               + w * (1 - w) * (g_mean - t_mean) ** 2)
        return Prediction(em=em, uncertainty=np.sqrt(var), graph=g_mean, trees=t_mean)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write the model directory (weights, tree_models, ``model.json`` with sha256 sums)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}
        if self.members:
            state = {f"member{i}": {k: v.detach().cpu() for k, v in m.state_dict().items()}
                     for i, m in enumerate(self.members)}
            torch.save(state, d / "weights.pt")
            files["weights.pt"] = sha256_file(d / "weights.pt")
        for i, b in enumerate(self.tree_models):
            name = f"trees_{i}.npz"
            b.save(d / name)
            files[name] = sha256_file(d / name)
        meta = {
            **self.info,
            "format_version": FORMAT_VERSION,
            "n_members": len(self.members),
            "model": self.members[0].config.to_dict() if self.members else None,
            "graph": self.graph_config.__dict__,
            "n_tree_models": len(self.tree_models),
            "graph_weight": self.graph_weight,
            "files": files,
        }
        (d / "model.json").write_text(json.dumps(meta, indent=1, default=float))
        return d

    @classmethod
    def load(cls, directory: str | Path | None = None, device: str = "cpu") -> BandPredictor:
        """Load a model directory (default: the shipped model), checking sha256 sums.

        Raises:
            ModelLoadError: missing files, a checksum mismatch or an unknown format.
        """
        d = Path(directory) if directory else default_model_dir()
        try:
            meta = json.loads((d / "model.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"no readable model.json in {d}: {exc}") from exc
        if int(meta.get("format_version", -1)) != FORMAT_VERSION:
            raise ModelLoadError(
                f"model format {meta.get('format_version')} in {d}; this screener reads {FORMAT_VERSION}"
            )
        for name, digest in meta.get("files", {}).items():
            path = d / name
            if not path.exists():
                raise ModelLoadError(f"model file missing: {path}")
            if sha256_file(path) != digest:
                raise ModelLoadError(f"checksum mismatch for {path}: the file was modified or is corrupt")
        members: list[BandALIGNN] = []
        if meta.get("n_members", 0):
            try:
                state = torch.load(d / "weights.pt", map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - e.g. UnpicklingError for a pickled object
                raise ModelLoadError(f"{d / 'weights.pt'}: not plain tensors ({exc})") from exc
            mcfg = BandModelConfig.from_dict(meta["model"])
            for i in range(int(meta["n_members"])):
                m = BandALIGNN(mcfg)
                m.load_state_dict(state[f"member{i}"])
                m.eval()
                members.append(m)
        tree_models = []
        n_trees = int(meta.get("n_tree_models", meta.get("n_boosters", 0)))  # "n_boosters": before 0.3
        if n_trees:

            try:
                tree_models = [load_tree_model(d / f"trees_{i}.npz") for i in range(n_trees)]
            except ValueError as exc:
                raise ModelLoadError(f"descriptor models in {d}: {exc}") from exc
        info = {k: v for k, v in meta.items()
                if k not in {"model", "graph", "files", "n_members", "n_tree_models", "n_boosters", "graph_weight"}}
        pred = cls(members, GraphConfig(**meta["graph"]), tree_models, meta.get("graph_weight", 1.0), info)
        return pred.to(device)


_PREDICTORS: dict[tuple[str, str, str], BandPredictor] = {}


def load_predictor(model_dir: str | Path | None = None, device: str = "cpu") -> BandPredictor:
    """The predictor of ``model_dir``, loaded once per process (i.e. once per Dask worker).

    Args:
        model_dir: a model directory (default: ``$SCREENER_MODEL_DIR``, else the shipped model).
        device: ``cpu`` or ``cuda``.

    Raises:
        ModelLoadError: the model cannot be loaded.
    """
    try:  # a model replaced on disk is loaded again, never served stale from the cache
        stamp = hashlib.sha256(model_meta_path(model_dir).read_bytes()).hexdigest()
    except OSError:
        stamp = ""
    key = (str(model_dir), device, stamp)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = BandPredictor.load(model_dir, device=device)
    return _PREDICTORS[key]


def check_model(model_dir: str | None) -> None:
    """Load the model once here, so that a broken or unsafe model stops the run before any work.

    Raises:
        ModelLoadError: the model cannot be loaded (missing or modified files, or weights that are
            not plain tensors: ``weights_only`` refuses pickled objects).
    """
    try:
        load_predictor(model_dir, "cpu")
    except Exception as exc:  # noqa: BLE001 - e.g. pickle.UnpicklingError from weights_only
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelLoadError(
            f"cannot load the model in {model_meta_path(model_dir).parent}: "
            f"{type(exc).__name__}: {first}"
        ) from exc
