"""A trained allocator as plain NumPy: no PyTorch import, no framework overhead per call.

:class:`NumpyAllocator` holds what one weight update needs: the feature spec, the input
scaler, the network's float64 parameters and its head. It goes from a price history to
weights exactly as :meth:`neuralfolio.nn.NeuralAllocator.predict_latest` does (tests hold the
two within 1e-6), and saves to / loads from ``runtime.safetensors`` + ``runtime.json`` with
``safetensors.numpy``, so a service or a policy can run a model where torch is not installed.

Make one with :meth:`neuralfolio.nn.NeuralAllocator.to_numpy_runtime` (dense and attention
networks with a softmax, simplex or long/short head). The forward passes here are the only
NumPy implementations of those networks, in two forms: :func:`dense_forward`,
:func:`attention_forward` and :func:`head_weights` are the readable reference;
:class:`DenseForward`, :class:`AttentionForward` and :class:`HeadForward` compile a network
once into a few NumPy calls per layer on preallocated buffers (within 1e-12 of the
reference), which is what :class:`NumpyAllocator` and ``neuralfolio.nn``'s single updates
run.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from neuralfolio.errors import ConfigError, DataError, ModelError
from neuralfolio.features import FeatureSpec, Standardizer, _upper, latest_features
from neuralfolio.scratch._activations import relu, softmax

__all__ = [
    "ACTIVATIONS",
    "AttentionForward",
    "DenseForward",
    "HeadForward",
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


# ------------------------------------------------------------------- compiled plans
# The functions above are the readable reference. The plans below compute the same
# weights (tests hold them within 1e-12) as few NumPy calls as the math allows: one
# weight update runs a few dozen calls on preallocated, per-thread buffers, each with
# everything that does not depend on the inputs folded into its weights at construction.

_MAX_WORKSPACES = 4  # single-row workspaces kept per thread (one per number of assets)


class _Plan:
    """Shared by the plans: per-thread single-row workspaces, pickling without them."""

    def _init_cache(self) -> None:
        self._local = threading.local()
        self._sized_cache: dict[int, Any] = {}

    def _single(self, n: int) -> Any:
        """The single-row workspace for ``n`` assets of this thread (built once)."""
        try:
            return self._local.ws[n]
        except AttributeError:
            self._local.ws = {}
        except KeyError:
            pass
        cache = self._local.ws
        if len(cache) >= _MAX_WORKSPACES:
            cache.pop(next(iter(cache)))
        ws = cache[n] = self._workspace(n, ())
        return ws

    def _workspace(self, n: int, lead: tuple[int, ...]) -> Any:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_local", None)
        state.pop("_sized_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_cache()


class HeadForward:
    """A head as a few NumPy calls: softmax, simplex (sparsemax) or long/short.

    Parameters
    ----------
    head : dict
        ``{"name", **config}`` as for :func:`head_weights` (no cash).

    Notes
    -----
    ``__call__(z)`` maps raw scores of shape (n_assets,) or (batch, n_assets) to a new array
    of weights of the same shape. The simplex threshold is ``tau = max_k (S_k - 1) / k``
    over the prefix sums ``S_k`` of the sorted scores (the prefix average rises up to the
    support size and falls after it), so no support count is needed. The long/short
    ``alpha`` is ``1 / max(1, max_k r_k)`` with ``r_k = -2 D_k / (slack + 2 k |net| / n)``:
    ``D_k`` are the prefix sums of the sorted demeaned scores (on the side against ``net``),
    each ``1 / r_k`` the leverage root on the piece where those ``k`` assets are short.
    """

    def __init__(self, head: dict[str, Any]) -> None:
        name = head.get("name")
        if name not in NUMPY_HEADS or head.get("cash", False):
            raise ConfigError(f"head {name!r} (cash={head.get('cash', False)}) has no NumPy "
                              f"version; NumPy heads: {', '.join(NUMPY_HEADS)} without cash.")
        self.name = name
        self.inv_temperature = 1.0 / float(head.get("temperature", 1.0))
        self._inv_t = np.array(self.inv_temperature)
        self.gross = float(head.get("gross_leverage", 1.0))
        self.net = float(head.get("net", 1.0))
        self._consts: dict[int, np.ndarray] = {}
        self._call = {"softmax": self._softmax, "simplex": self._simplex,
                      "long_short": self._long_short}[name]

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self._call(z)

    def _const(self, n: int) -> np.ndarray:
        c = self._consts.get(n)
        if c is None:
            k = np.arange(1.0, n + 1.0)
            if self.name == "long_short":
                side = 1.0 if self.net >= 0 else -1.0
                num = (self.gross - abs(self.net)) + 2.0 * k * abs(self.net) / n
                c = -2.0 * side / num
            else:
                c = 1.0 / k
            c = self._consts[n] = c
        return c

    def _softmax(self, z: np.ndarray) -> np.ndarray:
        e = np.subtract(z, np.maximum.reduce(z, axis=-1, keepdims=True))
        if self.inv_temperature != 1.0:
            np.multiply(e, self._inv_t, e)
        np.exp(e, e)
        return np.divide(e, np.add.reduce(e, axis=-1, keepdims=True), e)

    def _simplex(self, z: np.ndarray) -> np.ndarray:
        s = np.sort(z, axis=-1)
        if z.ndim == 1:
            s[-1] -= 1.0  # prefix sums of the descending scores, minus one
            c = np.add.accumulate(s[::-1])
            np.multiply(c, self._const(len(z)), c)
            tau = np.maximum.reduce(c)
            w = np.subtract(z, tau)
            return np.fmax(w, _ZERO, w) if tau == tau else w  # NaN scores stay NaN
        s[..., -1] -= 1.0
        c = np.add.accumulate(s[..., ::-1], axis=-1)
        np.multiply(c, self._const(z.shape[-1]), c)
        w = np.subtract(z, np.maximum.reduce(c, axis=-1, keepdims=True))
        return np.maximum(w, _ZERO, out=w)

    def _long_short(self, z: np.ndarray) -> np.ndarray:
        n = z.shape[-1]
        d = np.subtract(z, np.add.reduce(z, axis=-1, keepdims=True) / n)
        s = np.sort(d, axis=-1)
        r = np.add.accumulate(s if self.net >= 0 else s[..., ::-1], axis=-1)
        np.multiply(r, self._const(n), r)
        den = np.fmax(np.maximum.reduce(r, axis=-1, keepdims=True), _ONE)  # NaN stays in d
        np.divide(d, den, d)
        return np.add(d, self.net / n, d)


# gelu(z) = g(a z) * k: the input scale a goes into the linear layer before, k into the one
# after, and g is six calls, either g(y) = y / (1 + exp(y (b + y^2))) (a < 0; exp is about
# twice as fast as tanh, used where the weights keep its argument below _EXP_SAFE) or
# g(y) = y (1 + tanh(y (b + y^2))) (a > 0; any input).
_GELU_EXP_A = -((2.0 * _GELU_C * 0.044715) ** (1.0 / 3.0))
_GELU_TANH_A = (_GELU_C * 0.044715) ** (1.0 / 3.0)
_GELU = {"exp": (_GELU_EXP_A, np.array(-2.0 * _GELU_C / _GELU_EXP_A), 1.0 / _GELU_EXP_A),
         "tanh": (_GELU_TANH_A, np.array(_GELU_C / _GELU_TANH_A), 0.5 / _GELU_TANH_A)}
_EXP_SAFE = 700.0
_ONE, _ZERO = np.array(1.0), np.array(0.0)


def _gelu_into(y: np.ndarray, t: np.ndarray, out: np.ndarray, form: str) -> None:
    np.multiply(y, y, t)
    np.add(t, _GELU[form][1], t)
    np.multiply(t, y, t)
    if form == "exp":
        np.exp(t, t)
        np.add(t, _ONE, t)
        np.divide(y, t, out)
    else:
        np.tanh(t, t)
        np.add(t, _ONE, t)
        np.multiply(t, y, out)


def _gelu_form(w: np.ndarray, b: np.ndarray, norm: float) -> str:
    """The GELU form for inputs ``u @ w + b`` with ``|u| <= norm``: "exp" when its exp
    cannot overflow, else "tanh"."""
    y = abs(_GELU_EXP_A) * (norm * np.linalg.norm(w, axis=0) + np.abs(b))
    top = float(np.max(y * (float(_GELU["exp"][1]) + y * y), initial=0.0))
    return "exp" if top < _EXP_SAFE else "tanh"


def _center(w: np.ndarray) -> np.ndarray:
    """``w`` followed by the projection that removes the mean over its outputs."""
    return np.ascontiguousarray(w - w.mean(axis=-1, keepdims=True))


def _c(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


class _Ns:
    """A workspace: buffers and views of them, as attributes."""


class AttentionForward(_Plan):
    """The asset-attention network compiled into a few dozen NumPy calls.

    Parameters
    ----------
    p, arch, head
        As for :func:`attention_forward` (parameters from
        ``AssetAttentionAllocator._numpy_params``).

    Notes
    -----
    ``__call__(x)`` maps raw risk features of shape (n_features,) or (batch, n_features),
    for any number of assets, to weights of shape (n_assets,) or (batch, n_assets), the
    same as :func:`attention_forward`. What construction folds:

    * The residual stream is kept centred over its features: every layer that writes to
      it has the centring projection folded in, so a layer norm is one ``vecdot``, one
      ``sqrt`` and one division. The stream buffer is ``[h | kappa | s]``:
      ``kappa = sqrt(d eps)`` makes ``vecdot`` give ``|h|^2 + d eps`` and ``s`` its root,
      so dividing the whole buffer by ``s`` gives the normalized row with a last column
      of ones, which carries the next layer's bias; ``sqrt(d)`` goes into its weights.
      Layer outputs land in a buffer shaped like the stream with two zero columns, so
      each residual update is one contiguous addition.
    * ``1/sqrt(d_head)`` is in the query weights. Terms that do not change a softmax over
      the keys are dropped (key bias, pair-bias bias), and the value bias moves into the
      output bias (attention rows sum to one). The values carry a column of ones, so the
      product with the unnormalized attention gives its row sums too. An all-zero extra
      key row makes the scores ``(n_heads, n, n + 1)``, the layout of the correlation
      biases, which for every layer and head come from one product with
      ``[C | 1; C*C | 1]``.
    * One ``take`` builds the correlation matrix and the token inputs (log-volatility,
      mean and spread of the correlations, ``n u``) as rows read through one strided
      view; their scalings, which depend on the number of assets as does the ``1/n`` of
      the propagation step, are folded per ``n`` and cached.
    * Attention scores are bounded by the weights alone (a normalized row has norm at
      most ``sqrt(d)`` and correlations lie in [-1, 1]): when that bound keeps ``exp``
      in range the row maximum is not subtracted (inputs whose correlations exceed 1
      take the subtracting path). GELU's constants are in the layers around it, and it
      runs on ``exp`` where the weights bound its argument, else on ``tanh``.
    * The score bias is dropped (the heads do not change under a common shift) and a
      softmax temperature is folded into the score weights.

    Single rows run on per-thread buffers (no batch dimension, ``out=`` everywhere);
    batches run the same calls on buffers made for the call.
    """

    def __init__(self, p: dict[str, np.ndarray], arch: dict[str, Any],
                 head: dict[str, Any]) -> None:
        p = {k: np.asarray(v, dtype=np.float64) for k, v in p.items()}
        d, nh = int(arch["d_model"]), int(arch["n_heads"])
        dh, nl = d // nh, int(arch["n_layers"])
        self.d, self.n_heads, self.d_head, self.n_layers = d, nh, dh, nl
        self.unconstrained = bool(arch["unconstrained"])
        self.prior = bool(arch["prior"])
        softmax_head = head.get("name") == "softmax"
        self.head = HeadForward({**head, "temperature": 1.0} if softmax_head else head)
        self._inv_t = 1.0 / float(head.get("temperature", 1.0)) if softmax_head else 1.0
        sd = math.sqrt(d)
        self._kappa = math.sqrt(d * 1e-5)
        self._widths: dict[int, int] = {}

        # Embedding: first-layer rows in token order (log_vol, mean corr, spread, n u); the
        # per-n scalings are applied in _sized.
        a, _, k = _GELU["tanh"]  # token inputs are unbounded
        self._we0 = p["embed.0.weight"] * a
        self._be0 = p["embed.0.bias"] * a
        self._we2 = _center(np.vstack([p["embed.2.weight"] * k, p["embed.2.bias"]]))

        layers, pair, self._exact_softmax = [], [], []
        for i in range(nl):
            q = f"blocks.{i}."
            w, b = p[q + "qkv.weight"], p[q + "qkv.bias"]
            wq, wk, wv = w[:, :d] / math.sqrt(dh), w[:, d:2 * d], w[:, 2 * d:]
            bq, bv = b[:d] / math.sqrt(dh), b[2 * d:]
            qkv = np.zeros((d + 2, 2 * d + nh * (dh + 1)))
            qkv[:d, :d], qkv[:d, d:2 * d], qkv[d + 1, :d] = sd * wq, sd * wk, bq
            for h in range(nh):
                c0 = 2 * d + h * (dh + 1)
                qkv[:d, c0:c0 + dh] = sd * wv[:, h * dh:(h + 1) * dh]
                qkv[d + 1, c0 + dh] = 1.0  # the ones column: row sums of the attention
            wo, bo = p[q + "attn_out.weight"], p[q + "attn_out.bias"]
            out = _center(np.vstack([wo, bv @ wo + bo]))
            wp, g2, b2 = p[q + "propagate.weight"], p[q + "norm2.weight"], p[q + "norm2.bias"]
            prop = _center(np.vstack([sd * g2[:, None] * wp, np.zeros((1, d)),
                                      (b2 @ wp)[None]]))
            w0, b0 = p[q + "ff.0.weight"], p[q + "ff.0.bias"]
            form = _gelu_form(w0, b0, sd)
            a, _, k = _GELU[form]
            ff0 = np.vstack([sd * a * w0, np.zeros((1, 2 * d)), a * b0[None]])
            ff3 = _center(np.vstack([p[q + "ff.3.weight"] * k, p[q + "ff.3.bias"]]))
            pb = p[q + "pair_bias.weight"]  # (2, n_heads)
            pair.append(pb.T)
            # |q.k| <= (sqrt(d) |Wq_h| + |bq_h|) sqrt(d) |Wk_h|; |corr| <= 1.01 is checked.
            bound = max(
                (sd * np.linalg.norm(wq[:, h * dh:(h + 1) * dh], 2)
                 + np.linalg.norm(bq[h * dh:(h + 1) * dh]))
                * sd * np.linalg.norm(wk[:, h * dh:(h + 1) * dh], 2)
                + 1.01 * abs(pb[0, h]) + 1.0201 * abs(pb[1, h]) for h in range(nh))
            self._exact_softmax.append(bool(bound >= 600.0))
            layers.append((_c(qkv), out, prop, _center(p[q + "propagate.bias"]), _c(ff0),
                           ff3, form))
        self._layers = layers
        self._pair = _c(np.vstack(pair))  # (n_layers * n_heads, 2)
        self._score = _c(sd * self._inv_t * p["score.weight"][:, 0])
        self._init_cache()

    # ----------------------------------------------------------------- per n
    def n_assets(self, m: int) -> int:
        """The number of assets whose risk features have width ``m`` (cached)."""
        n = self._widths.get(m)
        if n is None:
            n = self._widths[m] = assets_in(m, self.unconstrained)
        return n

    def _sized(self, n: int) -> tuple:
        s = self._sized_cache.get(n)
        if s is not None:
            return s
        unc, den = self.unconstrained, max(n - 1, 1)
        we0, be0 = self._we0, self._be0
        # token rows: [n u] (unconstrained), a, D b (unused), spread, ones, log_vol
        rows = ([we0[3] * n] if unc else []) + [we0[1] / den, np.zeros_like(be0),
                                                 we0[2] / den, be0, we0[0]]
        vecs = np.ones((2, n + 1, 1))
        vecs[:, n] = -1.0
        vecs[1] *= den
        props = [_c(layer[2] / n) for layer in self._layers]
        s = self._sized_cache[n] = (_c(np.vstack(rows)), vecs, props)
        return s

    def _workspace(self, n: int, lead: tuple[int, ...]) -> _Ns:
        d, nh, dh, nl = self.d, self.n_heads, self.d_head, self.n_layers
        we0, vecs, props = self._sized(n)
        nu = n if self.unconstrained else 0
        rows, cols = _upper(n)
        n_pairs = len(rows)
        m = n + n_pairs + nu
        k_tok = nu // n + 5 if n else 5
        w = _Ns()
        w.vecs, w.props, w.we0 = vecs, props, we0
        # src = [x | 1]; big = [u | a | D b | spread | ones | log_vol | C | 1 | C*C | 1]:
        # one take fills the token rows (a, D b and spread with ones, overwritten below)
        # and [C | 1]; the rest is computed from them.
        w.src = np.ones((*lead, m + 1))
        w.x = w.src[..., :m]
        t0 = k_tok * n
        big = np.empty((*lead, t0 + 2 * n * (n + 1)))
        idx = np.full(t0 + n * (n + 1), m, dtype=np.intp)
        if nu:
            idx[:n] = np.arange(m - n, m)
        idx[t0 - n:t0] = np.arange(n)
        cmat = idx[t0:].reshape(n, n + 1)
        cmat[rows, cols] = cmat[cols, rows] = n + np.arange(n_pairs)
        if lead:
            idx = idx + (np.arange(lead[0]) * (m + 1))[:, None]
        w.idx = idx
        w.filled = big[..., :t0 + n * (n + 1)]
        w.u = big[..., :nu]
        w.ab = big[..., nu:nu + 2 * n].reshape((*lead, 2, n, 1))
        w.a, w.b = big[..., nu:nu + n], big[..., nu + n:nu + 2 * n]
        w.spread = big[..., nu + 2 * n:nu + 3 * n]
        w.tokens = big[..., :t0].reshape((*lead, k_tok, n)).swapaxes(-1, -2)
        w.cc = cc = big[..., t0:].reshape((*lead, 2, n, n + 1))
        w.c_aug, w.c2 = cc[..., 0, :, :], cc[..., 1, :, :]
        w.cc_flat = cc.reshape((*lead, 2, n * (n + 1)))
        w.bias = np.empty((*lead, nl * nh, n * (n + 1)))
        b5 = w.bias.reshape((*lead, nl, nh, n, n + 1))
        w.bias_l = [b5[..., i, :, :, :] for i in range(nl)]
        w.e0, w.t0 = np.empty((*lead, n, d)), np.empty((*lead, n, d))
        w.g_aug = np.ones((*lead, n, d + 1))
        w.g = w.g_aug[..., :d]
        # residual stream [h | kappa | s], layer outputs [o | 0 | 0] and the normalized
        # stream [h/s | kappa/s | 1] with a zero row: the extra key of the scores.
        w.h_aug = np.zeros((*lead, n, d + 2))
        w.h_aug[..., d] = self._kappa
        w.h, w.hk = w.h_aug[..., :d], w.h_aug[..., :d + 1]
        w.s, w.s_col = w.h_aug[..., d + 1], w.h_aug[..., d + 1:]
        w.o_aug = np.zeros((*lead, n, d + 2))
        w.o = w.o_aug[..., :d]
        w.hn1 = np.zeros((*lead, n + 1, d + 2))
        w.hn = w.hn1[..., :n, :]
        w.qkv = qkv = np.empty((*lead, n + 1, 2 * d + nh * (dh + 1)))
        k = len(lead)
        w.q = qkv[..., :n, :d].reshape((*lead, n, nh, dh)).swapaxes(-3, -2)
        w.kt = qkv[..., d:2 * d].reshape((*lead, n + 1, nh, dh)).transpose(
            *range(k), k + 1, k + 2, k)
        w.v = qkv[..., :n, 2 * d:].reshape((*lead, n, nh, dh + 1)).swapaxes(-3, -2)
        w.scores = np.empty((*lead, nh, n, n + 1))
        w.att_in = w.scores[..., :n]
        w.av = np.empty((*lead, nh, n, dh + 1))
        w.av_num, w.av_den = w.av[..., :dh], w.av[..., dh:]
        w.a_aug = np.ones((*lead, n, d + 1))
        w.att = w.a_aug[..., :d].reshape((*lead, n, nh, dh)).swapaxes(-3, -2)
        w.y_aug = np.empty((*lead, nl, n + 1, d))
        for i, layer in enumerate(self._layers):
            w.y_aug[..., i, n, :] = layer[3]
        w.y_l = [(w.y_aug[..., i, :, :], w.y_aug[..., i, :n, :]) for i in range(nl)]
        w.ff, w.tf = np.empty((*lead, n, 2 * d)), np.empty((*lead, n, 2 * d))
        w.f_aug = np.ones((*lead, n, 2 * d + 1))
        w.f = w.f_aug[..., :2 * d]
        w.z = np.empty((*lead, n))
        w.zu = np.empty((*lead, n)) if self._inv_t != 1.0 else None
        return w

    # ----------------------------------------------------------------- forward
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Weights from raw risk features.

        Parameters
        ----------
        x : ndarray, shape (n_features,) or (batch, n_features)

        Returns
        -------
        ndarray, shape (n_assets,) or (batch, n_assets)
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            w = self._single(self.n_assets(x.shape[0]))
        elif x.ndim == 2:
            n = self.n_assets(x.shape[1])
            if not len(x):
                return np.empty((0, n))
            w = self._workspace(n, (len(x),))
        else:
            raise ConfigError(f"risk features have shape (n_features,) or (batch, "
                              f"n_features), got {x.shape}.")
        return self._run(w, x)

    def _run(self, w: _Ns, x: np.ndarray) -> np.ndarray:
        mm, add, div, vecdot, sqrt = np.matmul, np.add, np.divide, np.vecdot, np.sqrt
        np.copyto(w.x, x)
        np.take(w.src, w.idx, out=w.filled, mode="clip")
        np.multiply(w.c_aug, w.c_aug, w.c2)
        mm(w.cc, w.vecs, w.ab)  # a: off-diagonal row sums of C; D b: of C*C
        sp = w.spread
        np.multiply(w.a, w.a, sp)
        np.subtract(w.b, sp, sp)
        np.fmax(sp, _ZERO, sp)  # rounding can take it below 0; NaN inputs still reach C
        sqrt(sp, sp)
        mm(self._pair, w.cc_flat, w.bias)
        in_range = np.maximum.reduce(w.c2, axis=None) <= 1.0201
        mm(w.tokens, w.we0, w.e0)
        _gelu_into(w.e0, w.t0, w.g, "tanh")
        mm(w.g_aug, self._we2, out=w.h)
        hk, s, s_col, hn, h_aug, o, o_aug = w.hk, w.s, w.s_col, w.hn, w.h_aug, w.o, w.o_aug
        sc = w.scores
        for i, (qkv_w, out_w, _, _, ff0, ff3, form) in enumerate(self._layers):
            vecdot(hk, hk, out=s)
            sqrt(s, s)
            div(h_aug, s_col, hn)
            mm(w.hn1, qkv_w, w.qkv)
            mm(w.q, w.kt, sc)
            add(sc, w.bias_l[i], sc)
            if self._exact_softmax[i] or not in_range:
                real = w.att_in
                np.subtract(real, np.maximum.reduce(real, axis=-1, keepdims=True), real)
            np.exp(sc, sc)
            mm(w.att_in, w.v, w.av)
            div(w.av_num, w.av_den, w.att)
            mm(w.a_aug, out_w, o)
            add(h_aug, o_aug, h_aug)
            vecdot(hk, hk, out=s)
            sqrt(s, s)
            div(h_aug, s_col, hn)
            y_aug, y = w.y_l[i]
            mm(hn, w.props[i], y)
            mm(w.c_aug, y_aug, o)
            add(h_aug, o_aug, h_aug)
            vecdot(hk, hk, out=s)
            sqrt(s, s)
            div(h_aug, s_col, hn)
            mm(hn, ff0, w.ff)
            _gelu_into(w.ff, w.tf, w.f, form)
            mm(w.f_aug, ff3, o)
            add(h_aug, o_aug, h_aug)
        vecdot(hk, hk, out=s)
        sqrt(s, s)
        z = w.z
        mm(w.h, self._score, z)
        div(z, s, z)
        if self.prior:
            if w.zu is None:
                add(z, w.u, z)
            else:
                add(z, np.multiply(w.u, self._inv_t, w.zu), z)
        return self.head(z)


class DenseForward(_Plan):
    """A dense network compiled into a few NumPy calls per layer.

    Parameters
    ----------
    layers : list of (W, b, activation)
        As for :func:`dense_forward`; the last activation is usually the head's
        (``"softmax"`` or ``"sparsemax"``).
    prior : int
        Add the last ``prior`` inputs (after scaling), times ``prior_scale``, to the last
        layer's scores, as :func:`dense_forward` does.
    prior_scale : float
    scaler : (ndarray, ndarray), optional
        ``(mean, scale)``, each of shape (n_inputs,): the network takes
        ``(x - mean) / scale``. Folded into the first layer (and the prior), so raw
        inputs go straight in.

    Notes
    -----
    ``__call__(x)`` maps inputs of shape (n_inputs,) or (batch, n_inputs) to outputs of
    shape (n_outputs,) or (batch, n_outputs), the same as ``dense_forward(layers,
    (x - mean) / scale, prior, prior_scale)``. Each hidden layer's output goes into a
    buffer ending in a one, which carries the next layer's bias; a sigmoid is folded
    into a ``tanh`` and the affine maps around it, a hidden ReLU is ``z + |z|`` with the
    half in the next layer; the prior inputs ride along as extra inputs of the last
    layer with a diagonal weight.
    """

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, str]], prior: int = 0,
                 prior_scale: float = 1.0,
                 scaler: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        if not layers:
            raise ConfigError("a dense network needs at least one layer.")
        for _, _, act in layers:
            if act not in ACTIVATIONS:
                raise ConfigError(f"unknown activation {act!r}; the NumPy layers know "
                                  f"{', '.join(ACTIVATIONS)}.")
        ws = [np.array(w, dtype=np.float64) for w, _, _ in layers]
        bs = [np.array(b, dtype=np.float64) for _, b, _ in layers]
        acts = [a for _, _, a in layers]
        self.n_inputs, self.n_outputs = ws[0].shape[0], ws[-1].shape[1]
        self.prior = int(prior)
        f = np.full(self.prior, float(prior_scale))
        shift = np.zeros(self.prior)
        if scaler is not None:
            mean, scale = (np.asarray(v, dtype=np.float64) for v in scaler)
            bs[0] = bs[0] - (mean / scale) @ ws[0]
            ws[0] = ws[0] / scale[:, None]
            if self.prior:
                shift = -f * mean[-self.prior:] / scale[-self.prior:]
                f = f / scale[-self.prior:]
        for i in range(len(ws) - 1):
            if acts[i] == "sigmoid":  # sigmoid(z) = (1 + tanh(z / 2)) / 2
                ws[i], bs[i], acts[i] = ws[i] * 0.5, bs[i] * 0.5, "tanh"
                bs[i + 1] = bs[i + 1] + 0.5 * ws[i + 1].sum(axis=0)
                ws[i + 1] = ws[i + 1] * 0.5
            elif acts[i] == "relu":  # relu(z) = (z + |z|) / 2
                acts[i], ws[i + 1] = "relu2", ws[i + 1] * 0.5
        if self.prior:
            bs[-1] = bs[-1].copy()
            bs[-1][:self.prior] += shift
            if len(ws) == 1:  # the prior inputs are the network's own inputs
                ws[0] = ws[0].copy()
                ws[0][-self.prior:, :self.prior] += np.diag(f)
        self._first = (_c(ws[0]), _c(bs[0]))
        self._rest = []
        for j in range(1, len(ws)):
            parts = [ws[j], bs[j][None]]
            if self.prior and j == len(ws) - 1:
                extra = np.zeros((self.prior, ws[j].shape[1]))
                extra[:, :self.prior] = np.diag(f)
                parts.append(extra)
            self._rest.append(_c(np.vstack(parts)))
        self._acts = acts
        last = acts[-1]  # the head's, usually; every branch returns a new array
        self._last = (HeadForward({"name": "softmax"}) if last == "softmax" else
                      HeadForward({"name": "simplex"}) if last == "sparsemax" else
                      ACTIVATIONS[last])
        self._sizes = [w.shape[1] for w in ws]
        self._init_cache()

    def _workspace(self, n: int, lead: tuple[int, ...]) -> _Ns:
        w = _Ns()
        zs = [np.empty((*lead, k)) for k in self._sizes]
        w.z0, w.z_last, w.steps = zs[0], zs[-1], []
        for i, k in enumerate(self._sizes[:-1]):
            extra = self.prior if i == len(self._sizes) - 2 else 0
            buf = np.ones((*lead, k + 1 + extra))  # [activation | 1 | prior inputs]
            w.steps.append((self._acts[i], zs[i], buf[..., :k],
                            buf[..., k + 1:] if extra else None, buf, self._rest[i],
                            zs[i + 1]))
        return w

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs from inputs.

        Parameters
        ----------
        x : ndarray, shape (n_inputs,) or (batch, n_inputs)
            Raw inputs (before the scaler, when one is folded in).

        Returns
        -------
        ndarray, shape (n_outputs,) or (batch, n_outputs)
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1 and len(x) == self.n_inputs:
            w = self._single(0)
        elif x.ndim == 2 and x.shape[1] == self.n_inputs:
            w = self._workspace(0, (len(x),))
        else:
            raise ConfigError(f"the network takes inputs of shape ({self.n_inputs},) or "
                              f"(batch, {self.n_inputs}), got {x.shape}.")
        z = w.z0
        np.matmul(x, self._first[0], z)
        np.add(z, self._first[1], z)
        for act, z, out, prior_in, buf, w_next, z_next in w.steps:
            if act == "relu2":  # 2 relu(z), NaN-propagating; the next layer halves it
                np.add(np.abs(z, out), z, out)
            elif act == "tanh":
                np.tanh(z, out)
            else:
                np.copyto(out, ACTIVATIONS[act](z))
            if prior_in is not None:
                np.copyto(prior_in, x[..., -self.prior:])
            np.matmul(buf, w_next, z_next)
        return self._last(w.z_last)


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
        self._plan: AttentionForward | DenseForward | None = None  # built on first use
        if kind == "dense":
            n = len(arch["activations"])
            self._layers = [(self.params[f"layer{i}.weight"], self.params[f"layer{i}.bias"],
                             arch["activations"][i]) for i in range(n)]

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """Weights from raw (unscaled) features, shape (batch, n_features) or (n_features,)
        to (batch, n_assets) or (n_assets,).

        Runs the compiled plan (:class:`AttentionForward` or :class:`DenseForward`, the
        input scaler folded into a dense network), built on first use.
        """
        plan = self._plan
        if plan is None:
            plan = self._plan = self._build_plan()
        if self.kind == "attention" and self._scaler is not None:
            x = self._scaler.transform(x)
        return plan(x)

    def _build_plan(self) -> AttentionForward | DenseForward:
        if self.kind == "attention":
            return AttentionForward(self.params, self.arch, self.head)
        scaler = (None if self._scaler is None
                  else (self._scaler.mean_, self._scaler.scale_))
        return DenseForward(self._layers, self.arch.get("prior", 0),
                            self.arch.get("prior_scale", 1.0), scaler=scaler)

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
