"""Training loop: any loss, optimizer and schedule, chronological early stopping, a progress bar."""

from __future__ import annotations

import contextlib
import copy
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from neuralfolio.errors import ConfigError, ModelError
from neuralfolio.nn._config import LOSS_NAMES, TrainConfig
from neuralfolio.nn._losses import LOSSES as LOSS_CLASSES
from neuralfolio.nn._losses import Loss, MaxDrawdown, Turnover

__all__ = ["LOSSES", "TASK_THREADS", "TrainHistory", "exclusive_rng", "fixed_threads",
           "resolve_device", "train_network"]

TASK_THREADS = 1
"""PyTorch intra-op threads of every fit and prediction of a policy (see :func:`fixed_threads`).

Float sums are split across threads, so a different count gives different low bits, which
training amplifies; joblib's process workers start with ``cores // n_jobs`` threads. One
fixed count makes a run the same whatever ``n_jobs``, backend or machine."""

_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 0
_rng_lock = threading.RLock()


@contextlib.contextmanager
def fixed_threads() -> Iterator[None]:
    """Run the block with :data:`TASK_THREADS` PyTorch threads, restored afterwards.

    The setting is process-wide, so nested and concurrent blocks (threads of one process)
    share it: the first to enter sets it, the last to leave restores the count before.
    """
    global _threads_users, _threads_before
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
            if _threads_before != TASK_THREADS:
                torch.set_num_threads(TASK_THREADS)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0 and torch.get_num_threads() != _threads_before:
                torch.set_num_threads(_threads_before)


@contextlib.contextmanager
def exclusive_rng() -> Iterator[None]:
    """Own PyTorch's global random generator for the block, then give back its state.

    Initial parameters and dropout draw from that one generator; a fit seeds it and then
    draws, which a fit running at the same time in another thread would interleave with.
    Blocks in different threads run one at a time; the caller's random state is left as
    it was.
    """
    with _rng_lock, torch.random.fork_rng(devices=[]):
        yield


def _imitation(loss: Loss) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda w, y: loss(w, target=y)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    name: _imitation(LOSS_CLASSES[name]()) for name in LOSS_NAMES
}
"""Imitation losses ``fn(weights, labels)``, both shape (batch, n_assets); each is the
:mod:`neuralfolio.nn._losses` class of the same name."""


@dataclass
class TrainHistory:
    """Loss and learning rate per epoch, and the epoch whose parameters were kept.

    ``best_epoch`` is -1 when no epoch improved on the starting parameters of a fine-tuning
    (``start_val_loss``), which were then kept.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int = -1
    start_val_loss: float | None = None
    loss: str = ""
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainHistory:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def plot(self, path: str | Path) -> Path:
        """Save the training and validation loss curves (PNG), the kept epoch marked.

        Returns
        -------
        Path
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.train_loss:
            raise ModelError("The history is empty: train the model before plotting it.")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        epochs = np.arange(1, len(self.train_loss) + 1)
        ax.plot(epochs, self.train_loss, label="training")
        ax.plot(epochs, self.val_loss, label="validation")
        if self.best_epoch >= 0:
            ax.axvline(self.best_epoch + 1, color="grey", linestyle=":", label="kept epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(self.loss or "loss")
        if min(self.train_loss + self.val_loss) > 0:
            ax.set_yscale("log")
        ax.legend(frameon=False)
        ax.set_title("training history")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when PyTorch sees a GPU, else the CPU; ``"cuda"`` without one fails."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device='cuda' but PyTorch sees no GPU (this build or machine has no CUDA); "
            "use device='auto' or 'cpu'."
        )
    return torch.device(name)


def _needs_order(loss: Loss, returns: np.ndarray | None) -> bool:
    # Turnover compares consecutive rows; a drawdown over 2-D returns compounds the rows.
    return any(
        isinstance(t, Turnover) or (isinstance(t, MaxDrawdown) and returns is not None
                                    and returns.ndim == 2)
        for _, t in loss.terms
    )


def _batches(n: int, size: int, ordered: bool, gen: torch.Generator,
             min_rows: int = 1) -> Iterator[torch.Tensor]:
    """Index batches; batches shorter than ``min_rows`` are dropped (a loss measured across
    the batch needs at least two rows)."""
    if ordered:
        # Runs of consecutive dates, cut from a random offset, visited in random order.
        offset = int(torch.randint(0, size, (1,), generator=gen)) if n > size else 0
        starts = sorted({0, *range(offset, n, size)})
        for i in torch.randperm(len(starts), generator=gen).tolist():
            lo, hi = starts[i], [*starts, n][i + 1]
            if hi - lo >= min_rows:
                yield torch.arange(lo, hi)
        return
    order = torch.randperm(n, generator=gen)
    for lo in range(0, n, size):
        idx = order[lo : lo + size]
        if len(idx) >= min_rows:
            yield idx


def _min_rows(loss: Loss, returns: np.ndarray | None) -> int:
    # Statistics across the batch (2-D returns) and turnover need two rows.
    series = returns is not None and returns.ndim == 2
    return 2 if any(isinstance(t, Turnover) or (series and "returns" in t.needs)
                    for _, t in loss.terms) else 1


@contextlib.contextmanager
def _deterministic(on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _optimizer(model: torch.nn.Module, c: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if c.optimizer == "adam":
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
    if c.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=c.lr, momentum=c.momentum,
                                   weight_decay=c.weight_decay)
    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, c: TrainConfig) -> Any:
    if c.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.max_epochs)
    if c.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, c.max_epochs // 3),
                                               gamma=0.1)
    if c.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5,
                                                          patience=max(1, c.patience // 2))
    return None


def _l1_penalty(model: torch.nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters() if p.ndim >= 2)


def _check_finite(value: float, epoch: int, where: str) -> None:
    if not math.isfinite(value):
        raise ModelError(
            f"Training diverged: the {where} loss is {value} at epoch {epoch + 1}. Lower lr, "
            "set clip_grad (e.g. 1.0) or check the inputs for extreme values."
        )


def train_network(
    model: torch.nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray | None,
    x_val: np.ndarray,
    y_val: np.ndarray | None,
    config: TrainConfig,
    *,
    r_train: np.ndarray | None = None,
    r_val: np.ndarray | None = None,
    progress: bool = False,
    description: str = "training",
    keep_start: bool = False,
) -> TrainHistory:
    """Fit ``model`` in place, stopping early on the validation loss.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (batch, n_inputs) to weights (batch, n_assets).
    x_train, x_val : ndarray, shapes (n_train, n_inputs) and (n_val, n_inputs)
        Scaled inputs; validation rows come chronologically after the training rows.
    y_train, y_val : ndarray, shape (n_train or n_val, n_assets), or None
        Label weights, for imitation losses.
    config : TrainConfig
        Loss, optimizer, schedule, penalties, batches, stopping and device.
    r_train, r_val : ndarray, shape (n, n_assets) or (n, horizon, n_assets), optional
        Asset returns realized after each decision, for outcome losses.
    progress : bool
        Show a rich progress bar.
    description : str
        Label of the progress bar.
    keep_start : bool
        Count the starting parameters as a candidate (fine-tuning): when no epoch beats
        their validation loss, the model is left unchanged and ``best_epoch`` is -1.

    Returns
    -------
    TrainHistory
        The model is left on the CPU, in evaluation mode, with the parameters of the best
        validation epoch.

    Raises
    ------
    ConfigError
        The loss needs labels or returns that were not given.
    ModelError
        The loss became NaN or infinite (diverged).
    """
    loss_fn = config.loss_fn()
    available = {name for name, a in (("target", y_train), ("returns", r_train)) if a is not None}
    loss_fn.check(available)
    device = resolve_device(config.device)
    gen = torch.Generator().manual_seed(config.seed)

    def tensor(a: np.ndarray | None) -> torch.Tensor | None:
        return None if a is None else torch.tensor(np.asarray(a), dtype=torch.float32,
                                                   device=device)

    xt, yt, rt, xv, yv, rv = map(tensor, (x_train, y_train, r_train, x_val, y_val, r_val))
    ordered = config.batch_order == "chronological" or (
        config.batch_order == "auto" and _needs_order(loss_fn, r_train))
    min_rows = _min_rows(loss_fn, r_train)
    if min_rows > config.batch_size:
        raise ConfigError(
            f"The loss {loss_fn.spec!r} is measured across the rows of a batch and needs "
            f"batch_size >= {min_rows}, got {config.batch_size}."
        )
    torch.manual_seed(config.seed)  # dropout draws from the global generator
    model.to(device)
    opt = _optimizer(model, config)
    sched = _scheduler(opt, config)

    def evaluate(x, y, r) -> torch.Tensor:
        value = loss_fn(model(x), target=y, returns=r)
        return value + config.l1 * _l1_penalty(model) if config.l1 else value

    history = TrainHistory(loss=loss_fn.spec, device=str(device))
    best, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
    if keep_start:
        model.eval()
        with torch.no_grad():
            best = float(evaluate(xv, yv, rv))
        history.start_val_loss = best
    n = len(xt)
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("val {task.fields[val]:.4g}"), TimeElapsedColumn(),
        disable=not progress, transient=True,
    )
    with bar, _deterministic(config.deterministic):
        task = bar.add_task(description, total=config.max_epochs, val=float("nan"))
        for epoch in range(config.max_epochs):
            model.train()
            total, seen = 0.0, 0
            for idx in _batches(n, config.batch_size, ordered, gen, min_rows):
                idx = idx.to(device)
                opt.zero_grad(set_to_none=True)
                loss = evaluate(xt[idx], None if yt is None else yt[idx],
                                None if rt is None else rt[idx])
                _check_finite(float(loss.detach()), epoch, "training")
                loss.backward()
                if config.clip_grad:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
                opt.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            model.eval()
            with torch.no_grad():
                val = float(evaluate(xv, yv, rv))
            _check_finite(val, epoch, "validation")
            history.train_loss.append(total / max(seen, 1))
            history.val_loss.append(val)
            history.lr.append(opt.param_groups[0]["lr"])
            bar.update(task, advance=1, val=val)
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(val)
            elif sched is not None:
                sched.step()
            if val < best and (best == math.inf or best - val > 1e-9 * max(1.0, abs(best))):
                best, best_state, stale = val, copy.deepcopy(model.state_dict()), 0
                history.best_epoch = epoch
            else:
                stale += 1
                if stale >= config.patience:
                    break
    model.load_state_dict(best_state)
    model.to("cpu")
    model.eval()
    return history
