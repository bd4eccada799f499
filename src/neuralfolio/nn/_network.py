"""PyTorch networks that map inputs to portfolio weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from neuralfolio.errors import ConfigError
from neuralfolio.nn._heads import AllocationHead, LongShortHead, SimplexHead, SoftmaxHead
from neuralfolio.scratch.runtime import dense_forward, head_weights

__all__ = ["ACTIVATIONS", "DenseAllocator", "numpy_forward"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class DenseAllocator(nn.Module):
    """Fully connected network with an allocation head.

    Parameters
    ----------
    n_inputs : int
    n_assets : int
    hidden : sequence of int
        Width of each hidden layer; ``(10,)`` with ``activation="sigmoid"`` is the course's.
    activation : {"relu", "tanh", "sigmoid"}
    dropout : float
        Dropout after each hidden activation (training only).
    head : AllocationHead, optional
        Raw outputs to weights (:mod:`neuralfolio.nn._heads`); a plain softmax by default.
    prior : bool
        Residual allocation: the last ``n_assets`` inputs are prior scores (the
        unconstrained minimum-variance weights of ``risk`` inputs, left unscaled) and the
        network learns a correction, ``head(prior + body(x))``. The last layer starts at
        zero, so an untrained network returns ``head(prior)``.

    Notes
    -----
    ``forward`` maps inputs of shape (batch, n_inputs) to weights of shape (batch, n_assets)
    that meet the head's constraints (with the softmax: positive, summing to one).
    """

    asset_agnostic = False
    scale_inputs = True

    def __init__(self, n_inputs: int, n_assets: int, hidden: tuple[int, ...] = (256, 256),
                 activation: str = "relu", dropout: float = 0.0,
                 head: AllocationHead | None = None, prior: bool = False) -> None:
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
        self.head = head if head is not None else SoftmaxHead()
        self.prior = bool(prior)
        if self.prior and self.n_inputs < self.n_assets:
            raise ConfigError(
                f"prior=True reads the last {self.n_assets} inputs as prior scores but there are "
                f"only {self.n_inputs}; use risk inputs with unconstrained=True."
            )
        last = nn.Linear(width, self.head.n_outputs(self.n_assets))
        if self.prior:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weights, shape (batch, n_assets), from inputs, shape (batch, n_inputs)."""
        z = self.body(x)
        if self.prior:
            n = self.n_assets
            z = torch.cat([z[..., :n] + x[..., -n:], z[..., n:]], dim=-1)
        return self.head(z)

    @property
    def numpy_ready(self) -> bool:
        """Whether :meth:`to_numpy` can represent this network (softmax or simplex head
        without cash); others run through PyTorch for single updates too."""
        return type(self.head) in (SoftmaxHead, SimplexHead) and not self.head.cash

    def to_numpy(self) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """Layers as float64 arrays ``(W, b, activation)``, ``W`` of shape (n_in, n_out).

        The last layer's activation is ``"softmax"`` or ``"sparsemax"`` (the head's; a
        softmax temperature is folded into the last layer). See :func:`numpy_forward` and
        :meth:`numpy_prior`.
        """
        if not self.numpy_ready:
            raise ConfigError(
                f"head {self.head.name!r} (cash={self.head.cash}) has no NumPy version; "
                "run the network with PyTorch."
            )
        linears = [m for m in self.body if isinstance(m, nn.Linear)]
        last = "softmax" if isinstance(self.head, SoftmaxHead) else "sparsemax"
        scale = [1.0] * (len(linears) - 1) + [
            1.0 / self.head.temperature if isinstance(self.head, SoftmaxHead) else 1.0
        ]
        acts = [self.activation] * (len(linears) - 1) + [last]
        return [
            (m.weight.detach().double().numpy().T * c, m.bias.detach().double().numpy() * c, a)
            for m, a, c in zip(linears, acts, scale, strict=True)
        ]

    def numpy_prior(self) -> dict[str, Any]:
        """The ``prior`` and ``prior_scale`` arguments of :func:`numpy_forward`."""
        if not self.prior:
            return {"prior": 0, "prior_scale": 1.0}
        t = self.head.temperature if isinstance(self.head, SoftmaxHead) else 1.0
        return {"prior": self.n_assets, "prior_scale": 1.0 / t}

    def config(self) -> dict[str, Any]:
        """Constructor arguments, enough to rebuild the architecture."""
        return {
            "n_inputs": self.n_inputs,
            "n_assets": self.n_assets,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "dropout": self.dropout,
            "prior": self.prior,
        }


def numpy_head(head: AllocationHead, z: np.ndarray) -> np.ndarray:
    """A head's weights from raw scores in float64 NumPy (softmax, simplex, long/short;
    no cash). See :func:`numpy_head_ready`."""
    return head_weights(head_spec(head), z)


def head_spec(head: AllocationHead) -> dict[str, Any]:
    """The head as ``{"name", **config}``, what the NumPy runtime reads."""
    return {"name": head.name, **head.config()}


def numpy_head_ready(head: AllocationHead) -> bool:
    """Whether :func:`numpy_head` implements ``head``."""
    return type(head) in (SoftmaxHead, SimplexHead, LongShortHead) and not head.cash


# The NumPy forward pass lives in the torch-free runtime; this name is kept for callers here.
numpy_forward = dense_forward
