"""A trained allocator as plain NumPy: no PyTorch import, no framework overhead per call.

:class:`NumpyAllocator` holds what one weight update needs: the feature spec, the input
scaler, the network's float64 parameters and its head. It goes from a price history to
weights exactly as :meth:`neuralfolio.nn.NeuralAllocator.predict_latest` does (tests hold the
two within 1e-6), and saves to / loads from ``runtime.safetensors`` + ``runtime.json`` with
``safetensors.numpy``, so a service or a policy can run a model where torch is not installed.

Make one with :meth:`neuralfolio.nn.NeuralAllocator.to_numpy_runtime` (dense and attention
networks with a softmax, simplex or long/short head). The forward passes here are the only
NumPy implementations of those networks: ``neuralfolio.nn`` calls them too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from neuralfolio.errors import ConfigError, DataError, ModelError
from neuralfolio.features import FeatureSpec, Standardizer, _upper, latest_features
from neuralfolio.scratch._activations import relu, softmax

__all__ = [
    "ACTIVATIONS",
    "NumpyAllocator",
    "assets_in",
    "attention_forward",
    "dense_forward",
    "head_weights",
    "long_short",
    "softmax",
    "sparsemax",
    "tokens",
]

RUNTIME_VERSION = 1
_WEIGHTS, _MANIFEST = "runtime.safetensors", "runtime.json"


# ---------------------------------------------------------------------------- heads
def sparsemax(z: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of ``z`` onto the simplex (exact zeros)."""
    # w = max(z - tau, 0), tau from the sorted scores.
    n = z.shape[-1]
    flat = z.reshape(-1, n)
    s = -np.sort(-flat, axis=-1)
    cums = np.cumsum(s, axis=-1) - 1.0
    n_free = np.count_nonzero(s * np.arange(1, n + 1) > cums, axis=-1)
    tau = cums[np.arange(len(flat)), n_free - 1] / n_free
    return np.maximum(flat - tau[:, None], 0.0).reshape(z.shape)


def long_short(z: np.ndarray, gross_leverage: float, net: float) -> np.ndarray:
    """Long/short weights summing to ``net`` with sum |w| <= ``gross_leverage``.

    ``w = net/n + alpha (z - mean z)``, with the largest ``alpha <= 1`` that meets the
    leverage bound, found exactly on the piecewise-linear, convex sum |w|.
    """
    flat = z.reshape(-1, z.shape[-1])
    c = net / flat.shape[-1]
    out = np.empty_like(flat)
    for i, row in enumerate(flat):
        d = row - row.mean()
        alpha = 1.0
        if np.abs(c + d).sum() > gross_leverage:
            with np.errstate(divide="ignore", invalid="ignore"):
                cuts = -c / d
            cuts = cuts[np.isfinite(cuts) & (cuts > 0.0) & (cuts < 1.0)]
            points = np.concatenate([[0.0], np.sort(cuts), [1.0]])
            sums = np.abs(c + points[:, None] * d).sum(axis=1)
            k = int(np.argmax(sums > gross_leverage))
            a0, a1, f0, f1 = points[k - 1], points[k], sums[k - 1], sums[k]
            alpha = a0 + (gross_leverage - f0) * (a1 - a0) / (f1 - f0)
        out[i] = c + alpha * d
    return out.reshape(z.shape)


NUMPY_HEADS = ("softmax", "simplex", "long_short")
"""Heads (without cash) that :func:`head_weights` implements."""


def head_weights(head: dict[str, Any], z: np.ndarray) -> np.ndarray:
    """Weights from raw scores, shape (..., n_assets), for a head ``{"name", **config}``."""
    name = head.get("name")
    if name not in NUMPY_HEADS or head.get("cash", False):
        raise ConfigError(f"head {name!r} (cash={head.get('cash', False)}) has no NumPy "
                          f"version; NumPy heads: {', '.join(NUMPY_HEADS)} without cash.")
    if name == "softmax":
        return softmax(z / head.get("temperature", 1.0))
    if name == "simplex":
        return sparsemax(z)
    return long_short(z, head["gross_leverage"], head.get("net", 1.0))


# ---------------------------------------------------------------------------- dense
ACTIVATIONS = {
    "relu": relu,
    "tanh": np.tanh,
    "sigmoid": lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)),
    "softmax": softmax,
    "sparsemax": sparsemax,
}
"""Activations of :func:`dense_forward`'s layers, by name."""


def dense_forward(layers: list[tuple[np.ndarray, np.ndarray, str]], x: np.ndarray,
                  prior: int = 0, prior_scale: float = 1.0) -> np.ndarray:
    """A dense network's forward pass in float64.

    Parameters
    ----------
    layers : list of (W, b, activation)
        ``W`` of shape (n_in, n_out); see :meth:`neuralfolio.nn.DenseAllocator.to_numpy`.
    x : ndarray, shape (..., n_inputs)
    prior : int
        Add the last ``prior`` inputs, times ``prior_scale``, to the last layer's scores
        before its activation (a network built with ``prior=True``: ``prior=n_assets``
        and ``prior_scale=1/temperature``).

    Returns
    -------
    ndarray, shape (..., n_assets)
    """
    h = x
    for i, (w, b, act) in enumerate(layers):
        z = h @ w + b
        if prior and i == len(layers) - 1:
            z = z + prior_scale * x[..., -prior:]
        h = ACTIVATIONS[act](z)
    return h


# ------------------------------------------------------------------------ attention
def assets_in(m: int, unconstrained: bool) -> int:
    """The number of assets whose risk features have width ``m``."""
    # n + n(n-1)/2 (+ n) = m  ->  n^2 + (1 or 3) n - 2m = 0
    b = 3 if unconstrained else 1
    n = round((-b + math.sqrt(b * b + 8 * m)) / 2)
    if n < 1 or n * (n + b) != 2 * m:
        layout = "n + n(n-1)/2 + n" if unconstrained else "n + n(n-1)/2"
        raise ConfigError(
            f"inputs of width {m} are not risk features of any number of assets "
            f"(expected {layout} values); build them with FeatureSpec('risk', "
            f"unconstrained={unconstrained})."
        )
    return n


def tokens(log_vol, corr, u, xp):
    """Per-asset token inputs, shape (batch, n, 3 or 4), with ``xp`` torch or numpy."""
    # Mean and spread of each asset's correlations with the others (the diagonal is 1).
    n = log_vol.shape[-1]
    denom = max(n - 1, 1)
    mean_corr = (corr.sum(-1) - 1.0) / denom
    second = ((corr * corr).sum(-1) - 1.0) / denom
    gap = second - mean_corr * mean_corr
    spread = xp.sqrt(gap.clamp(min=0.0) if xp is not np else np.maximum(gap, 0.0))
    parts = [log_vol, mean_corr, spread] + ([u * n] if u is not None else [])
    return xp.stack(parts, -1)


_GELU_C = math.sqrt(2.0 / math.pi)


def _gelu(z: np.ndarray) -> np.ndarray:
    return 0.5 * z * (1.0 + np.tanh(_GELU_C * (z + 0.044715 * z * z * z)))


def _standardize(h: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Layer norm without its affine part (folded into the next linear layer)."""
    inv_d = 1.0 / h.shape[-1]
    c = h - np.add.reduce(h, axis=-1, keepdims=True) * inv_d
    return c / np.sqrt(np.add.reduce(c * c, axis=-1, keepdims=True) * inv_d + eps)


def attention_forward(p: dict[str, np.ndarray], arch: dict[str, Any], head: dict[str, Any],
                      x: np.ndarray) -> np.ndarray:
    """The asset-attention network's forward pass in float64.

    Parameters
    ----------
    p : dict of str to ndarray
        Parameters as from ``AssetAttentionAllocator._numpy_params`` (linear weights as
        (in, out), layer-norm affines folded into the next linear layer).
    arch : dict
        ``n_heads``, ``d_model``, ``n_layers``, ``unconstrained``, ``prior``.
    head : dict
        ``{"name", **config}`` of the head (see :func:`head_weights`).
    x : ndarray, shape (batch, n_features) or (n_features,)
        Raw risk features.

    Returns
    -------
    ndarray, shape (batch, n_assets) or (n_assets,)
    """
    x = np.asarray(x, dtype=np.float64)
    single = x.ndim == 1
    x = x[None] if single else x
    unconstrained = arch["unconstrained"]
    n = assets_in(x.shape[-1], unconstrained)
    rows, cols = _upper(n)
    n_pairs = len(rows)
    log_vol = x[:, :n]
    corr = np.ones((len(x), n, n))
    corr[:, rows, cols] = corr[:, cols, rows] = x[:, n : n + n_pairs]
    u = x[:, n + n_pairs :] if unconstrained else None
    h = tokens(log_vol, corr, u, np)
    h = _gelu(h @ p["embed.0.weight"] + p["embed.0.bias"])
    h = h @ p["embed.2.weight"] + p["embed.2.bias"]
    b, hd = len(x), arch["n_heads"]
    dh = arch["d_model"] // hd
    pair = np.stack([corr, corr * corr], axis=-1)
    for i in range(arch["n_layers"]):
        q = f"blocks.{i}."
        qkv = (_standardize(h) @ p[q + "qkv.weight"] + p[q + "qkv.bias"]
               ).reshape(b, n, 3, hd, dh)
        qh, kh, vh = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))
        bias = pair @ p[q + "pair_bias.weight"] + p[q + "pair_bias.bias"]
        scores = qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(dh) + bias.transpose(0, 3, 1, 2)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        att = (scores / scores.sum(axis=-1, keepdims=True)) @ vh
        h = h + att.transpose(0, 2, 1, 3).reshape(b, n, -1) @ p[q + "attn_out.weight"] \
            + p[q + "attn_out.bias"]
        m = corr @ (_standardize(h) * p[q + "norm2.weight"] + p[q + "norm2.bias"]) / n
        h = h + m @ p[q + "propagate.weight"] + p[q + "propagate.bias"]
        f = _gelu(_standardize(h) @ p[q + "ff.0.weight"] + p[q + "ff.0.bias"])
        h = h + f @ p[q + "ff.3.weight"] + p[q + "ff.3.bias"]
    z = (_standardize(h) @ p["score.weight"] + p["score.bias"])[..., 0]
    if arch["prior"]:
        z = z + u
    w = head_weights(head, z)
    return w[0] if single else w


# -------------------------------------------------------------------------- runtime
class NumpyAllocator:
    """A trained allocator's single-update path in NumPy alone.

    Parameters
    ----------
    kind : {"dense", "attention"}
    features : FeatureSpec
    params : dict of str to ndarray
        ``dense``: ``layer{i}.weight`` (n_in, n_out) and ``layer{i}.bias``; ``attention``:
        the parameters of :func:`attention_forward`. Plus ``scaler.mean`` and
        ``scaler.scale`` when the inputs are standardized.
    arch : dict
        ``dense``: ``activations`` (one per layer, the last the head's: softmax or
        sparsemax), ``prior`` and ``prior_scale``; ``attention``: see
        :func:`attention_forward`.
    head : dict
        ``{"name", **config}``.
    assets : list of str
        Training order of the assets (any number for an asset-agnostic attention model).
    asset_agnostic : bool
    """

    def __init__(self, kind: str, features: FeatureSpec, params: dict[str, np.ndarray],
                 arch: dict[str, Any], head: dict[str, Any], assets: list[str],
                 asset_agnostic: bool = False) -> None:
        if kind not in ("dense", "attention"):
            raise ConfigError(f"NumpyAllocator runs 'dense' or 'attention' networks, not "
                              f"{kind!r}.")
        self.kind, self.features, self.arch, self.head = kind, features, arch, head
        self.params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        self.assets, self.asset_agnostic = list(assets), bool(asset_agnostic)
        self.lookback = features.lookback
        self._scaler = (Standardizer.from_arrays(self.params["scaler.mean"],
                                                 self.params["scaler.scale"])
                        if "scaler.mean" in self.params else None)
        if kind == "dense":
            n = len(arch["activations"])
            self._layers = [(self.params[f"layer{i}.weight"], self.params[f"layer{i}.bias"],
                             arch["activations"][i]) for i in range(n)]

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """Weights from raw (unscaled) features, shape (batch, n_features) or (n_features,)
        to (batch, n_assets) or (n_assets,)."""
        x = np.asarray(x, dtype=np.float64)
        if self._scaler is not None:
            x = self._scaler.transform(x)
        if self.kind == "attention":
            return attention_forward(self.params, self.arch, self.head, x)
        return dense_forward(self._layers, x, self.arch.get("prior", 0),
                             self.arch.get("prior_scale", 1.0))

    def predict_latest(self, history: np.ndarray) -> np.ndarray:
        """Weights for the last row of a price history, shape (>= lookback, n_assets) to
        (n_assets,); the same as ``NeuralAllocator.predict_latest``."""
        history = np.asarray(history, dtype=np.float64)
        if history.ndim != 2 or (history.shape[1] != len(self.assets)
                                 and not self.asset_agnostic):
            raise ModelError(
                f"history must have shape (n_dates, {len(self.assets)}), got {history.shape}.")
        if len(history) < self.lookback:
            raise DataError(
                f"history has {len(history)} rows; these inputs need {self.lookback}.")
        return self.predict_features(latest_features(history, self.features))

    # The Policy protocol's single update, so the runtime can stand in for a model.
    weights = predict_latest

    def save(self, path: str | Path) -> Path:
        """Write ``runtime.safetensors`` and ``runtime.json`` into directory ``path``."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: np.ascontiguousarray(v) for k, v in self.params.items()},
                  str(path / _WEIGHTS))
        manifest = {"runtime_version": RUNTIME_VERSION, "kind": self.kind,
                    "features": self.features.to_dict(), "arch": self.arch, "head": self.head,
                    "assets": self.assets, "asset_agnostic": self.asset_agnostic}
        (path / _MANIFEST).write_text(json.dumps(manifest, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> NumpyAllocator:
        """Read a directory written by :meth:`save`."""
        from safetensors.numpy import load_file

        path = Path(path)
        if not (path / _MANIFEST).exists() or not (path / _WEIGHTS).exists():
            raise ModelError(f"{path} is not a NumPy runtime (needs {_MANIFEST} and "
                             f"{_WEIGHTS}); export one with NeuralAllocator.to_numpy_runtime()"
                             ".save(path).")
        m = json.loads((path / _MANIFEST).read_text())
        if m.get("runtime_version") != RUNTIME_VERSION:
            raise ModelError(f"{path}: runtime version {m.get('runtime_version')!r}, this "
                             f"neuralfolio reads {RUNTIME_VERSION}; export the model again.")
        return cls(m["kind"], FeatureSpec.from_dict(m["features"]), load_file(str(path / _WEIGHTS)),
                   m["arch"], m["head"], m["assets"], m["asset_agnostic"])
