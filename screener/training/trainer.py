"""Training of the band model: seeded, batched, early stopping on a validation split."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Literal

import numpy as np
import torch

from screener.model.alignn import BandALIGNN, BandModelConfig
from screener.model.graphs import GraphConfig, GraphPair, collate
from screener.model.inference import default_device, predict_pairs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one band-model training.

    Attributes:
        epochs: largest number of passes over the training set.
        batch_size: bands per optimisation step.
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.
        loss: ``l1`` or ``huber`` (on eV).
        huber_delta: where the Huber loss turns linear (eV).
        patience: stop after this many epochs without a better validation MAE.
        val_fraction: share of the training bands held out for early stopping.
        seed: seeds the split, the initial weights and the batch order.
        threads: torch CPU threads (None leaves torch's default).
    """

    epochs: int = 30
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    loss: Literal["l1", "huber"] = "huber"
    huber_delta: float = 0.2
    patience: int = 8
    val_fraction: float = 0.1
    seed: int = 0
    threads: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ExperimentConfig:
    """Everything ``screener train`` needs: model, graphs, optimisation, descriptor trees.

    ``boosting`` holds keyword arguments of :class:`screener.model.trees.BoostingModel`
    (``transform`` and ``HistGradientBoostingRegressor`` parameters) and ``forest`` those of
    :class:`screener.model.trees.ForestModel` (``transform`` and ``ExtraTreesRegressor``
    parameters); empty means their defaults. ``tree_kinds`` says which of the two are fitted.
    ``forest_grid`` maps :class:`ForestModel` arguments (``transform``, ``aggregate`` and
    ``ExtraTreesRegressor`` parameters) to candidate values chosen by an
    inner cross-validation inside each outer fold (nested: no outer test row takes part in the
    choice). ``use_graph`` false trains no graph members (a descriptor-tree model).
    """

    model: BandModelConfig = field(default_factory=BandModelConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    boosting: dict[str, Any] = field(default_factory=dict)
    forest: dict[str, Any] = field(default_factory=dict)
    use_trees: bool = True
    use_graph: bool = True
    forest_grid: dict[str, list[Any]] = field(default_factory=dict)
    tree_kinds: tuple[str, ...] = ("extra_trees",)
    n_folds: int = 5
    fold_seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentConfig:
        """Build from a nested mapping (e.g. a JSON config file)."""
        return cls(
            model=BandModelConfig.from_dict(d.get("model", {})),
            graph=GraphConfig(**d.get("graph", {})),
            train=TrainConfig.from_dict(d.get("train", {})),
            boosting=dict(d.get("boosting", d.get("gbm", {}))),  # "gbm": configs before 0.3
            forest=dict(d.get("forest", {})),
            use_trees=bool(d.get("use_trees", d.get("use_gbm", True))),
            use_graph=bool(d.get("use_graph", True)),
            forest_grid={k: list(v) for k, v in d.get("forest_grid", {}).items()},
            tree_kinds=tuple(d.get("tree_kinds", ("extra_trees",))),
            n_folds=int(d.get("n_folds", 5)),
            fold_seed=int(d.get("fold_seed", 0)),
        )

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-dict form."""
        return {
            "model": self.model.to_dict(),
            "graph": asdict(self.graph),
            "train": asdict(self.train),
            "boosting": dict(self.boosting),
            "forest": dict(self.forest),
            "use_trees": self.use_trees,
            "use_graph": self.use_graph,
            "forest_grid": {k: list(v) for k, v in self.forest_grid.items()},
            "tree_kinds": list(self.tree_kinds),
            "n_folds": self.n_folds,
            "fold_seed": self.fold_seed,
        }


def _loss_fn(config: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if config.loss == "l1":
        return torch.nn.L1Loss()
    return torch.nn.HuberLoss(delta=config.huber_delta)


def train_model(
    pairs: list[GraphPair],
    targets: np.ndarray,
    model_config: BandModelConfig,
    config: TrainConfig,
    val_pairs: list[GraphPair] | None = None,
    val_targets: np.ndarray | None = None,
    device: torch.device | None = None,
    tag: str = "",
) -> tuple[BandALIGNN, list[dict[str, float]]]:
    """Train one band model; keep the weights of the best validation epoch.

    Args:
        pairs: graph pairs of the training bands.
        targets: their barriers in eV.
        model_config: architecture.
        config: optimisation settings.
        val_pairs: validation graphs; when None, ``config.val_fraction`` of ``pairs`` is held out.
        val_targets: their barriers.
        device: where to train (default: CUDA when present).
        tag: prefix of the log lines.

    Returns:
        The model (best validation epoch) and one history record per epoch.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    device = device or default_device()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    targets = np.asarray(targets, dtype=np.float32)
    if val_pairs is None:
        n_val = max(1, int(round(config.val_fraction * len(pairs)))) if len(pairs) > 1 else 0
        perm = rng.permutation(len(pairs))
        val_idx, tr_idx = perm[:n_val], perm[n_val:]
        val_pairs = [pairs[i] for i in val_idx]
        val_targets = targets[val_idx]
        pairs = [pairs[i] for i in tr_idx]
        targets = targets[tr_idx]
    model = BandALIGNN(model_config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(pairs) / config.batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.2
    )
    loss_fn = _loss_fn(config)
    best_mae, best_state, bad_epochs = np.inf, copy.deepcopy(model.state_dict()), 0
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(pairs))
        total, count = 0.0, 0
        for s in range(steps_per_epoch):
            idx = order[s * config.batch_size : (s + 1) * config.batch_size]
            if len(idx) == 0:
                continue
            g, lg = collate([pairs[i] for i in idx])
            y = torch.as_tensor(targets[idx], device=device)
            pred = model(g.to(device), lg.to(device))
            loss = loss_fn(pred, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        rec = {"epoch": epoch, "train_loss": total / max(count, 1)}
        if val_pairs:
            vp = predict_pairs(model, val_pairs, device=device)
            rec["val_mae"] = float(np.mean(np.abs(vp - val_targets)))
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        log.info(
            "%sepoch %d/%d train_loss %.4f val_mae %s (%.1fs)",
            tag, epoch, config.epochs, rec["train_loss"],
            f"{rec['val_mae']:.4f}" if "val_mae" in rec else "-", rec["seconds"],
        )
        score = rec.get("val_mae", rec["train_loss"])
        if score < best_mae - 1e-4:
            best_mae, best_state, bad_epochs = score, copy.deepcopy(model.state_dict()), 0
        else:
            bad_epochs += 1
            if bad_epochs >= config.patience:
                log.info("%searly stop at epoch %d (best val_mae %.4f)", tag, epoch, best_mae)
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, history
