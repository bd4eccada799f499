"""Hyperparameters of a network and its training (importable without PyTorch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from neuralfolio.errors import ConfigError

__all__ = ["LOSS_NAMES", "TrainConfig"]

LOSS_NAMES: tuple[str, ...] = ("mse", "l1", "cross_entropy")
"""Imitation losses :data:`neuralfolio.nn.LOSSES` implements."""


@dataclass
class TrainConfig:
    """Hyperparameters of a network and of its training.

    Parameters
    ----------
    hidden : tuple of int
        Hidden layer widths.
    activation : {"relu", "tanh", "sigmoid"}
    dropout : float
    loss : {"mse", "l1", "cross_entropy"}
        Imitation loss to the label weights.
    lr : float
        Adam learning rate.
    weight_decay : float
        L2 penalty (Adam's weight decay).
    batch_size : int
    max_epochs : int
    patience : int
        Epochs without validation improvement before stopping; the best epoch is kept.
    val_fraction : float
        Share of the training dates, taken from the end, used for validation.
    seed : int
    """

    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    dropout: float = 0.0
    loss: str = "mse"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    max_epochs: int = 100
    patience: int = 10
    val_fraction: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.loss not in LOSS_NAMES:
            raise ConfigError(
                f"Unknown loss {self.loss!r}; choose one of {', '.join(LOSS_NAMES)}."
            )
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}.")
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**d)
