"""Hyperparameters of a network and its training (importable without PyTorch)."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from neuralfolio.errors import ConfigError

__all__ = [
    "BATCH_ORDERS",
    "DEVICES",
    "LOSS_NAMES",
    "LR_SCHEDULES",
    "MODEL_NAMES",
    "OPTIMIZERS",
    "TrainConfig",
]

LOSS_NAMES: tuple[str, ...] = ("mse", "l1", "cross_entropy")
"""The classic imitation losses; ``loss`` takes any :func:`neuralfolio.nn.parse_loss` text."""

MODEL_NAMES: dict[str, str] = {
    "dense": "fully connected layers (hidden, activation, dropout); any inputs",
    "lstm": "LSTM over the window of returns (features 'returns')",
    "gru": "GRU over the window of returns (features 'returns')",
    "rnn": "plain tanh RNN over the window of returns (features 'returns')",
    "tcn": "temporal convolutional network over the window of returns (features 'returns')",
    "attention": "shared per-asset encoder with attention across assets, any number of "
                 "assets (features 'risk')",
}
"""Network families, with the inputs each takes."""

OPTIMIZERS: tuple[str, ...] = ("adam", "rmsprop", "sgd")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step", "plateau")
BATCH_ORDERS: tuple[str, ...] = ("auto", "shuffle", "chronological")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def from_settings(cls: type, d: dict[str, Any], noun: str) -> Any:
    """``cls(**d)`` for a dataclass, with a ConfigError naming unknown keys or bad values."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"Unknown {noun}(s) {unknown}; known: {', '.join(sorted(known))}.")
    try:
        return cls(**d)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid {noun}s: {exc}") from exc


def _choice(name: str, value: Any, choices: tuple[str, ...] | dict[str, str]) -> None:
    if value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}; choose one of {', '.join(choices)}.")


@dataclass
class TrainConfig:
    """Hyperparameters of a network and of its training.

    Parameters
    ----------
    model : str
        Network family, a key of :data:`MODEL_NAMES`.
    hidden : tuple of int
        Hidden layer widths of the dense network.
    activation : {"relu", "tanh", "sigmoid"}
        Of the dense network's hidden layers.
    dropout : float
        Dropout rate of every family.
    model_options : dict
        Further arguments of the family's constructor: ``cell``-free ``hidden_size`` and
        ``num_layers`` (lstm, gru, rnn), ``channels`` and ``kernel_size`` (tcn), ``d_model``,
        ``n_heads`` and ``n_layers`` (attention).
    head : str
        Allocation head, a key of :data:`neuralfolio.nn.HEADS` (``softmax``, ``simplex``,
        ``capped``, ``long_short``).
    head_options : dict
        The head's arguments, e.g. ``{"max_weight": 0.1}`` or ``{"cash": true}``.
    loss : str
        Training objective as :func:`neuralfolio.nn.parse_loss` reads it: imitation
        (``mse``, ``l1``, ``cross_entropy``, ``kl``; need labels), realized outcomes
        (``variance``, ``volatility``, ``neg_sharpe``, ``cvar``, ``max_drawdown``; need no
        labels) and ``turnover``, combined as in ``"mse + 0.1*turnover"``.
    horizon : int
        Days of returns realized after each decision that the outcome losses see
        (1: the next day only; longer horizons average out daily noise).
    optimizer : {"adam", "rmsprop", "sgd"}
    lr : float
        Learning rate.
    momentum : float
        SGD and RMSprop momentum.
    weight_decay : float
        L2 penalty coefficient (the optimizer's weight decay).
    l1 : float
        L1 penalty coefficient on the weight matrices, added to the loss.
    lr_schedule : {"constant", "cosine", "step", "plateau"}
        Cosine annealing over ``max_epochs``, a tenfold step down every third of
        ``max_epochs``, or halving after ``patience // 2`` epochs without validation gain.
    clip_grad : float
        Largest gradient norm per step; 0 leaves gradients unclipped.
    batch_size : int
    batch_order : {"auto", "shuffle", "chronological"}
        ``chronological`` keeps each batch a run of consecutive dates (blocks visited in
        random order), which turnover and 1-day drawdown losses need; ``auto`` picks it for
        those losses and shuffles otherwise.
    max_epochs : int
    patience : int
        Epochs without validation improvement before stopping; the best epoch is kept.
    val_fraction : float
        Share of the training dates, taken from the end, used for validation.
    seed : int
    deterministic : bool
        Use only deterministic PyTorch kernels (slower on GPUs; identical reruns).
    device : {"auto", "cpu", "cuda"}
        ``auto`` trains on CUDA when PyTorch sees a GPU. Prediction runs on the CPU.
    """

    model: str = "dense"
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    dropout: float = 0.0
    model_options: dict[str, Any] = field(default_factory=dict)
    head: str = "softmax"
    head_options: dict[str, Any] = field(default_factory=dict)
    loss: str = "mse"
    horizon: int = 1
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    l1: float = 0.0
    lr_schedule: str = "constant"
    clip_grad: float = 0.0
    batch_size: int = 256
    batch_order: str = "auto"
    max_epochs: int = 100
    patience: int = 10
    val_fraction: float = 0.15
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        try:
            self.hidden = tuple(int(h) for h in self.hidden)
        except (TypeError, ValueError):
            raise ConfigError(
                f"hidden must be a list of layer widths such as [256, 256], got {self.hidden!r}."
            ) from None
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden layer widths must be >= 1, got {list(self.hidden)}.")
        self.model_options = dict(self.model_options)
        self.head_options = dict(self.head_options)
        _choice("model", self.model, MODEL_NAMES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("batch_order", self.batch_order, BATCH_ORDERS)
        _choice("device", self.device, DEVICES)
        if not isinstance(self.loss, str) or not self.loss.strip():
            raise ConfigError(
                f"loss must be a text such as 'mse' or 'variance', got {self.loss!r}.")
        self.loss_fn()  # a ConfigError naming the bad term, before any data is loaded
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}.")
        for name in ("batch_size", "max_epochs", "patience", "horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}.")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}.")
        for name in ("weight_decay", "l1", "clip_grad", "momentum"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}.")

    def loss_fn(self) -> Any:
        """The parsed :class:`neuralfolio.nn.Loss` (imports PyTorch)."""
        from neuralfolio.nn._losses import parse_loss

        return parse_loss(self.loss)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict such as :meth:`to_dict` gives; unknown keys are refused."""
        return from_settings(cls, d, "train setting")
