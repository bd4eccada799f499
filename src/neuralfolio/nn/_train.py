"""Training loop: Adam, an imitation loss, chronological early stopping, a progress bar."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from neuralfolio.nn._config import LOSS_NAMES, TrainConfig
from neuralfolio.nn._losses import LOSSES as LOSS_CLASSES
from neuralfolio.nn._losses import Loss

__all__ = ["LOSSES", "TrainHistory", "train_network"]


def _imitation(loss: Loss) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda w, y: loss(w, target=y)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    name: _imitation(LOSS_CLASSES[name]()) for name in LOSS_NAMES
}
"""Imitation losses ``fn(weights, labels)``, both shape (batch, n_assets), as the trainer
calls them; each is the :mod:`neuralfolio.nn._losses` class of the same name."""


@dataclass
class TrainHistory:
    """Loss per epoch and the epoch whose parameters were kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _val_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> float:
    model.eval()
    with torch.no_grad():
        return float(loss_fn(model(x), y))


def train_network(
    model: torch.nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    *,
    progress: bool = False,
    description: str = "training",
) -> TrainHistory:
    """Fit ``model`` in place with Adam and early stopping on the validation loss.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (batch, n_inputs) to weights (batch, n_assets).
    x_train, y_train : ndarray, shapes (n_train, n_inputs) and (n_train, n_assets)
    x_val, y_val : ndarray, shapes (n_val, n_inputs) and (n_val, n_assets)
        Chronologically after the training rows.
    config : TrainConfig
    progress : bool
        Show a rich progress bar.

    Returns
    -------
    TrainHistory
        The model is left with the parameters of the best validation epoch.
    """
    loss_fn = LOSSES[config.loss]
    gen = torch.Generator().manual_seed(config.seed)
    xt, yt, xv, yv = (
        torch.tensor(np.asarray(a), dtype=torch.float32) for a in (x_train, y_train, x_val, y_val)
    )
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = TrainHistory()
    best, best_state, stale = float("inf"), copy.deepcopy(model.state_dict()), 0
    n = len(xt)
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("val {task.fields[val]:.4g}"), TimeElapsedColumn(),
        disable=not progress, transient=True,
    )
    with bar:
        task = bar.add_task(description, total=config.max_epochs, val=float("nan"))
        for epoch in range(config.max_epochs):
            model.train()
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for lo in range(0, n, config.batch_size):
                idx = order[lo : lo + config.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            val = _val_loss(model, xv, yv, loss_fn)
            history.train_loss.append(total / n)
            history.val_loss.append(val)
            bar.update(task, advance=1, val=val)
            if val < best - 1e-7:
                best, best_state, stale = val, copy.deepcopy(model.state_dict()), 0
                history.best_epoch = epoch
            else:
                stale += 1
                if stale >= config.patience:
                    break
    model.load_state_dict(best_state)
    model.eval()
    return history
