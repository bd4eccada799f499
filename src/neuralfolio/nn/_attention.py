"""A network whose parameter count does not depend on the number of assets.

Each asset is a token described by its own risk inputs; the tokens exchange information
through attention whose scores are biased by the assets' pairwise correlations, and through
a correlation-weighted average of the other tokens (one step of propagation over the
correlation matrix, the operation behind ``S^-1 1``). The same per-asset score layer then
scores every asset. Nothing in the network is sized by ``n_assets``, so a model trained on
20 assets allocates 8 or 50, and permuting the assets permutes the weights.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from neuralfolio.errors import ConfigError
from neuralfolio.nn._heads import AllocationHead, SoftmaxHead
from neuralfolio.nn._network import head_spec, numpy_head_ready
from neuralfolio.scratch.runtime import AttentionForward
from neuralfolio.scratch.runtime import assets_in as _assets_in
from neuralfolio.scratch.runtime import tokens as _tokens

__all__ = ["AssetAttentionAllocator", "split_risk_features"]


def split_risk_features(
    x: torch.Tensor, unconstrained: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Unpack ``risk`` inputs (:func:`neuralfolio.features.covariance_features`).

    Parameters
    ----------
    x : tensor, shape (batch, n_features)
    unconstrained : bool
        Whether the inputs end with the unconstrained minimum-variance weights.

    Returns
    -------
    log_vol : tensor, shape (batch, n_assets)
    corr : tensor, shape (batch, n_assets, n_assets)
        Full correlation matrices, ones on the diagonal.
    u : tensor, shape (batch, n_assets), or None
    """
    n = _assets_in(x.shape[-1], unconstrained)
    n_pairs = n * (n - 1) // 2
    log_vol = x[..., :n]
    rows, cols = torch.triu_indices(n, n, offset=1, device=x.device)
    corr = torch.ones(*x.shape[:-1], n, n, dtype=x.dtype, device=x.device)
    corr[..., rows, cols] = x[..., n : n + n_pairs]
    corr[..., cols, rows] = x[..., n : n + n_pairs]
    u = x[..., n + n_pairs :] if unconstrained else None
    return log_vol, corr, u


class _Block(nn.Module):
    """Correlation-biased multi-head attention, correlation propagation, feed-forward."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.pair_bias = nn.Linear(2, n_heads)  # from (corr, corr^2) to a score per head
        self.attn_out = nn.Linear(d_model, d_model)
        self.propagate = nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, 2 * d_model), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
            nn.Linear(2 * d_model, d_model),
        )
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, n, 3, self.n_heads, self.d_head).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (b, heads, n, d_head)
        bias = self.pair_bias(torch.stack([corr, corr * corr], dim=-1)).permute(0, 3, 1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head) + bias
        a = torch.softmax(scores, dim=-1) @ v
        h = h + self.drop(self.attn_out(a.transpose(1, 2).reshape(b, n, d)))
        h = h + self.drop(self.propagate(corr @ self.norm2(h) / n))
        return h + self.drop(self.ff(self.norm3(h)))


class AssetAttentionAllocator(nn.Module):
    """Shared per-asset encoder with attention across assets, for any number of assets.

    Parameters
    ----------
    d_model : int
        Width of each asset's representation; a multiple of ``n_heads``.
    n_heads : int
    n_layers : int
        Attention blocks.
    dropout : float
    unconstrained : bool
        Whether the ``risk`` inputs end with the unconstrained minimum-variance weights
        (``FeatureSpec.unconstrained``).
    prior : bool
        With ``unconstrained`` inputs, score each asset as its unconstrained weight plus a
        learned correction (the score layer starts at zero).
    head : AllocationHead, optional
        Softmax by default. Per-asset caps given as a list fix the number of assets; give
        one number to keep the model size-free. With ``cash`` the cash score comes from
        the mean of the asset representations.

    Notes
    -----
    ``forward`` maps ``risk`` inputs of shape (batch, n_features) for any ``n_assets`` to
    weights of shape (batch, n_assets). The asset tokens are the demeaned log-volatility,
    the mean and spread of the asset's correlations with the others and ``n_assets * u``
    (so that equal weight reads 1 whatever the number of assets). Inputs are used unscaled:
    they are already scale-free, and a per-column scaler would tie the model to one width.
    """

    asset_agnostic = True
    scale_inputs = False

    def __init__(self, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 dropout: float = 0.0, unconstrained: bool = True, prior: bool = True,
                 head: AllocationHead | None = None) -> None:
        super().__init__()
        if d_model < 1 or n_heads < 1 or n_layers < 1:
            raise ConfigError(
                f"d_model, n_heads and n_layers must be >= 1, got {d_model}, {n_heads}, "
                f"{n_layers}."
            )
        if d_model % n_heads:
            raise ConfigError(
                f"d_model={d_model} is not a multiple of n_heads={n_heads}; pick for example "
                f"d_model={n_heads * max(1, round(d_model / n_heads))}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}.")
        self.d_model, self.n_heads, self.n_layers = int(d_model), int(n_heads), int(n_layers)
        self.dropout, self.unconstrained = float(dropout), bool(unconstrained)
        self.prior = bool(prior) and self.unconstrained
        self.head = head if head is not None else SoftmaxHead()
        n_token = 3 + self.unconstrained
        self.embed = nn.Sequential(nn.Linear(n_token, d_model), nn.GELU(approximate="tanh"),
                                   nn.Linear(d_model, d_model))
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.score = nn.Linear(d_model, 1)
        if self.prior:
            nn.init.zeros_(self.score.weight)
            nn.init.zeros_(self.score.bias)
        self.cash_score = nn.Linear(d_model, 1) if self.head.cash else None

    @property
    def numpy_ready(self) -> bool:
        """Whether :meth:`numpy_forward` can run this network (softmax, simplex or
        long/short head, no cash)."""
        return numpy_head_ready(self.head)

    def numpy_forward(self, x: np.ndarray) -> np.ndarray:
        """The forward pass in float64 NumPy, for single updates without PyTorch overhead.

        Parameters
        ----------
        x : ndarray, shape (batch, n_features) or (n_features,)

        Returns
        -------
        ndarray, shape (batch, n_assets) or (n_assets,)
        """
        if not self.numpy_ready:
            raise ConfigError(f"head {self.head.name!r} (cash={self.head.cash}) has no NumPy "
                              "version; run the network with PyTorch.")
        plan = getattr(self, "_np", None)
        if plan is None:  # compiled once; train() drops it
            plan = self._np = AttentionForward(self._numpy_params(), self.config(),
                                               head_spec(self.head))
        return plan(x)

    def _numpy_params(self) -> dict[str, np.ndarray]:
        """float64 parameters, linear weights as (in, out); the affine part of a layer norm
        that feeds a linear layer is folded into that layer."""
        p = {k: v.detach().double().numpy() for k, v in self.state_dict().items()}
        p = {k: v.T.copy() if k.endswith(".weight") and v.ndim == 2 else v for k, v in p.items()}

        def fold(norm: str, linear: str) -> None:
            g, beta = p.pop(norm + ".weight"), p.pop(norm + ".bias")
            p[linear + ".bias"] = beta @ p[linear + ".weight"] + p[linear + ".bias"]
            p[linear + ".weight"] = g[:, None] * p[linear + ".weight"]

        for i in range(self.n_layers):
            fold(f"blocks.{i}.norm1", f"blocks.{i}.qkv")
            fold(f"blocks.{i}.norm3", f"blocks.{i}.ff.0")
        fold("norm", "score")
        return p

    def train(self, mode: bool = True) -> AssetAttentionAllocator:
        self._np = None  # parameters may change: rebuild the NumPy plan when next needed
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weights, shape (batch, n_assets), from risk inputs, shape (batch, n_features)."""
        log_vol, corr, u = split_risk_features(x, self.unconstrained)
        h = self.embed(_tokens(log_vol, corr, u, torch))
        for block in self.blocks:
            h = block(h, corr)
        h = self.norm(h)
        z = self.score(h).squeeze(-1)
        if self.prior:
            z = z + u
        if self.cash_score is not None:
            z = torch.cat([z, self.cash_score(h.mean(dim=1))], dim=-1)
        return self.head(z)

    def config(self) -> dict[str, Any]:
        """Constructor arguments except the head, enough to rebuild the architecture."""
        return {
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "n_layers": self.n_layers,
            "dropout": self.dropout,
            "unconstrained": self.unconstrained,
            "prior": self.prior,
        }
