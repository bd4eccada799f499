"""PyTorch networks that map inputs to portfolio weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from neuralfolio.errors import ConfigError

__all__ = ["ACTIVATIONS", "DenseAllocator", "numpy_forward"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class DenseAllocator(nn.Module):
    """Fully connected network with a long-only softmax head.

    Parameters
    ----------
    n_inputs : int
    n_assets : int
    hidden : sequence of int
        Width of each hidden layer; ``(10,)`` with ``activation="sigmoid"`` is the course's.
    activation : {"relu", "tanh", "sigmoid"}
    dropout : float
        Dropout after each hidden activation (training only).

    Notes
    -----
    ``forward`` maps inputs of shape (batch, n_inputs) to weights of shape (batch, n_assets)
    that are positive and sum to one.
    """

    def __init__(self, n_inputs: int, n_assets: int, hidden: tuple[int, ...] = (256, 256),
                 activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"Unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}.")
        if any(int(h) < 1 for h in hidden):
            raise ConfigError(f"hidden layer widths must be >= 1, got {tuple(hidden)}.")
        self.n_inputs, self.n_assets = int(n_inputs), int(n_assets)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation, self.dropout = activation, dropout
        layers: list[nn.Module] = []
        width = self.n_inputs
        for h in self.hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, self.n_assets))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weights, shape (batch, n_assets), from inputs, shape (batch, n_inputs)."""
        return torch.softmax(self.body(x), dim=-1)

    def to_numpy(self) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """Layers as float64 arrays ``(W, b, activation)``, ``W`` of shape (n_in, n_out).

        The last layer's activation is ``"softmax"``. See :func:`numpy_forward`.
        """
        linears = [m for m in self.body if isinstance(m, nn.Linear)]
        acts = [self.activation] * (len(linears) - 1) + ["softmax"]
        return [
            (m.weight.detach().double().numpy().T.copy(),
             m.bias.detach().double().numpy().copy(), a)
            for m, a in zip(linears, acts, strict=True)
        ]

    def config(self) -> dict[str, Any]:
        """Constructor arguments, enough to rebuild the architecture."""
        return {
            "n_inputs": self.n_inputs,
            "n_assets": self.n_assets,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "dropout": self.dropout,
        }


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_NUMPY_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)),
    "softmax": _softmax,
}


def numpy_forward(layers: list[tuple[np.ndarray, np.ndarray, str]], x: np.ndarray) -> np.ndarray:
    """Evaluate :meth:`DenseAllocator.to_numpy` layers in float64, without torch.

    Parameters
    ----------
    layers : list of (W, b, activation)
    x : ndarray, shape (..., n_inputs)

    Returns
    -------
    ndarray, shape (..., n_assets)
    """
    h = x
    for w, b, act in layers:
        h = _NUMPY_ACTIVATIONS[act](h @ w + b)
    return h
