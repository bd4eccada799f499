"""Allocation heads: the last layer of an allocator, from raw scores to portfolio weights.

A head maps raw outputs ``z`` of shape (batch, n_outputs) to weights ``w`` of shape
(batch, n_assets) that meet its constraints exactly, up to floating-point rounding:

==============  ===================================================  =====================
name            weights                                              exact zeros
==============  ===================================================  =====================
``softmax``     ``softmax(z / temperature)``; positive, sum 1         never
``simplex``     Euclidean projection onto the simplex (sparsemax)     yes
``capped``      projection onto ``{0 <= w <= u, sum w = 1}``          yes, and exact caps
``long_short``  ``sum w = net`` and ``sum |w| <= gross_leverage``     only by coincidence
==============  ===================================================  =====================

With ``cash=True`` (softmax, simplex, capped) the network outputs one more value, the cash
score, last. The head allocates over the assets and cash together and returns the asset
weights only, which then sum to at most one (cash is ``1 - w.sum(-1)``). Build the last
layer with :meth:`AllocationHead.n_outputs` units.

Every head works along the last dimension, so any leading shape is accepted. Heads are
differentiable almost everywhere. The projections search their threshold in float64 without
gradient, then recompute it with gradient from the active set (which assets sit at zero, at
their cap, or in between), so the weights are exact for that set and autograd gives the
Jacobian of the projection: for the free assets ``F``, ``dw_i/dz_j = delta_ij - 1/|F|``,
and zero for assets at a bound. The Jacobian jumps only where the active set changes.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from neuralfolio.errors import ConfigError

__all__ = [
    "HEADS",
    "AllocationHead",
    "CappedSimplexHead",
    "HeadBounds",
    "LongShortHead",
    "SimplexHead",
    "SoftmaxHead",
    "make_head",
]

_MAX_STEPS = 200  # bisection steps at most; a float64 bracket is resolved in about 60
_EPS = float(np.finfo(np.float64).eps)


class HeadBounds(NamedTuple):
    """What a head promises about its weights for ``n_assets`` assets.

    Attributes
    ----------
    lower, upper : ndarray, shape (n_assets,)
        Per-asset bounds, ``lower <= w <= upper``.
    total : tuple of float
        ``(min, max)`` of ``w.sum(-1)``; both equal when the sum is fixed.
    gross : float
        Largest ``abs(w).sum(-1)``.
    """

    lower: np.ndarray
    upper: np.ndarray
    total: tuple[float, float]
    gross: float


class AllocationHead(nn.Module):
    """Base of the heads: cash handling, input width, bounds and configuration.

    Parameters
    ----------
    cash : bool
        Whether the last raw output is a cash score (see the module notes).
    """

    name: ClassVar[str]

    def __init__(self, cash: bool = False) -> None:
        super().__init__()
        self.cash = bool(cash)

    def n_outputs(self, n_assets: int) -> int:
        """Width of the raw outputs this head expects: ``n_assets``, plus one with cash."""
        return int(n_assets) + self.cash

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Weights, shape (..., n_assets), from raw outputs, shape (..., n_outputs)."""
        if z.ndim < 1 or z.shape[-1] < 1 + self.cash:
            raise ConfigError(
                f"head {self.name!r} got raw outputs of shape {tuple(z.shape)}; it needs at "
                f"least {1 + self.cash} values in the last dimension. Build the last layer "
                f"with head.n_outputs(n_assets) units."
            )
        w = self._weights(z)
        return w[..., :-1] if self.cash else w

    def _weights(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def bounds(self, n_assets: int) -> HeadBounds:
        """Bounds the weights for ``n_assets`` assets respect; see :class:`HeadBounds`."""
        n = int(n_assets)
        return HeadBounds(np.zeros(n), np.ones(n), (0.0 if self.cash else 1.0, 1.0), 1.0)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-serializable: ``make_head(head.name, **head.config())``."""
        return {"cash": self.cash}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())


class SoftmaxHead(AllocationHead):
    """Long-only ``softmax(z / temperature)``: positive weights summing to one.

    Parameters
    ----------
    temperature : float
        Greater than zero. Lower is more concentrated, higher is closer to equal weights.
    cash : bool
        Take ``n_assets + 1`` outputs, the last one cash; the weights then sum to less than one.

    Notes
    -----
    Weights are never exactly zero; use :class:`SimplexHead` when they should be.
    """

    name = "softmax"

    def __init__(self, temperature: float = 1.0, cash: bool = False) -> None:
        super().__init__(cash)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(
                f"temperature must be a finite number > 0, got {temperature}; "
                f"use 1.0 for a plain softmax (lower is sharper, higher is flatter)."
            )
        self.temperature = float(temperature)

    def _weights(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(z / self.temperature, dim=-1)

    def config(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "cash": self.cash}


class SimplexHead(AllocationHead):
    """Euclidean projection of ``z`` onto the probability simplex (sparsemax).

    ``w = max(z - tau, 0)`` with the threshold ``tau`` found exactly by sorting, so weights
    sum to one and low scores get exactly zero.

    Parameters
    ----------
    cash : bool
        Take ``n_assets + 1`` outputs, the last one cash; the weights then sum to at most one.
    """

    name = "simplex"

    def _weights(self, z: torch.Tensor) -> torch.Tensor:
        return _sparsemax(z.double()).to(z.dtype)


class CappedSimplexHead(AllocationHead):
    """Euclidean projection onto ``{0 <= w <= u, sum w = 1}``: capped long-only weights.

    ``w = clip(z - tau, 0, u)`` with ``tau`` such that the weights sum to one. Caps are met
    exactly (also in float32, where a cap is rounded down to the nearest float32) and low
    scores get exactly zero.

    Parameters
    ----------
    max_weight : float or sequence of float
        Cap ``u``, one for all assets in (0, 1], or one per asset in [0, 1]. The caps must
        add up to at least one unless ``cash`` is set.
    cash : bool
        Take ``n_assets + 1`` outputs, the last one cash (uncapped); the weights then sum
        to at most one.
    """

    name = "capped"

    def __init__(self, max_weight: float | Sequence[float] | torch.Tensor,
                 cash: bool = False) -> None:
        super().__init__(cash)
        if isinstance(max_weight, torch.Tensor):
            max_weight = max_weight.detach().cpu().double().reshape(-1).tolist()
        if isinstance(max_weight, Sequence | np.ndarray):
            caps = tuple(float(u) for u in max_weight)
            if not caps or not all(0.0 <= u <= 1.0 for u in caps):
                raise ConfigError(
                    f"max_weight per asset must be a non-empty sequence of numbers in [0, 1], "
                    f"got {list(caps)}."
                )
            self.max_weight: float | tuple[float, ...] = caps
            self._caps(len(caps))  # feasibility is known already
        else:
            cap = float(max_weight)
            if not 0.0 < cap <= 1.0:
                raise ConfigError(f"max_weight must be in (0, 1], got {cap}.")
            self.max_weight = cap

    def _caps(self, n_assets: int) -> np.ndarray:
        """Caps of the ``n_assets`` assets, float64, after checking that they fit."""
        n = int(n_assets)
        if isinstance(self.max_weight, float):
            caps = np.full(n, self.max_weight)
            if not self.cash and caps.sum() < 1.0 - 1e-12:
                raise ConfigError(
                    f"max_weight={self.max_weight} on {n} assets cannot sum to 1 (the caps add "
                    f"up to {caps.sum():.6g}); raise max_weight to at least 1/{n} = {1 / n:.6g}, "
                    f"use more assets, or set cash=True."
                )
            return caps
        caps = np.asarray(self.max_weight)
        if len(caps) != n:
            raise ConfigError(
                f"max_weight has {len(caps)} caps but the head got {n} assets; give one cap "
                f"per asset or a single number."
            )
        if not self.cash and caps.sum() < 1.0 - 1e-12:
            raise ConfigError(
                f"max_weight caps on {n} assets add up to {caps.sum():.6g} and cannot sum to 1; "
                f"raise some caps or set cash=True."
            )
        return caps

    def n_outputs(self, n_assets: int) -> int:
        """Width of the raw outputs this head expects; raises ConfigError if caps cannot fit."""
        self._caps(n_assets)
        return super().n_outputs(n_assets)

    def _weights(self, z: torch.Tensor) -> torch.Tensor:
        caps = self._caps(z.shape[-1] - self.cash)
        if self.cash:
            caps = np.append(caps, 1.0)
        u = torch.as_tensor(caps, dtype=torch.float64, device=z.device)
        w = _capped_projection(z.double(), u)
        if z.dtype == torch.float64:
            return w
        u_low = u.to(z.dtype)  # the nearest cap in z.dtype may be above u: step down
        u_low = torch.where(u_low.double() > u, torch.nextafter(u_low, torch.zeros_like(u_low)),
                            u_low)
        return torch.minimum(w.to(z.dtype), u_low)

    def bounds(self, n_assets: int) -> HeadBounds:
        b = super().bounds(n_assets)
        return b._replace(upper=self._caps(n_assets).copy())

    def config(self) -> dict[str, Any]:
        cap = self.max_weight
        return {"max_weight": cap if isinstance(cap, float) else list(cap), "cash": self.cash}


class LongShortHead(AllocationHead):
    """Long/short weights with ``sum w = net`` and ``sum |w| <= gross_leverage``.

    With ``c = net / n`` and deviations ``d = z - mean(z)`` (which sum to zero),
    ``w = c + alpha * d``: ``alpha = 1`` when ``sum |c + d| <= gross_leverage``, else the
    ``alpha`` in [0, 1) with ``sum |c + alpha d| = gross_leverage`` exactly. That function of
    ``alpha`` is convex and piecewise linear and equals ``|net|`` at 0, so the root is unique;
    it is bracketed by bisection, then solved in closed form on its linear piece.

    Parameters
    ----------
    gross_leverage : float
        Largest ``sum |w|``; at least ``|net|`` and above zero.
    net : float
        Sum of the weights (1 for fully invested, 0 for dollar neutral).

    Notes
    -----
    Every asset gets ``net / n`` when all scores are equal; weights are exactly zero only by
    coincidence. The per-asset range is ``[-(gross_leverage - net) / 2,
    (gross_leverage + net) / 2]``.
    """

    name = "long_short"

    def __init__(self, gross_leverage: float = 1.5, net: float = 1.0) -> None:
        super().__init__(cash=False)
        if not (math.isfinite(net) and math.isfinite(gross_leverage)):
            raise ConfigError(
                f"gross_leverage and net must be finite, got {gross_leverage} and {net}."
            )
        if gross_leverage <= 0 or gross_leverage < abs(net):
            raise ConfigError(
                f"gross_leverage={gross_leverage} is below |net|={abs(net)} (or not above 0): "
                f"weights summing to {net} need sum |w| >= {abs(net)}; raise gross_leverage "
                f"or lower |net|."
            )
        self.gross_leverage, self.net = float(gross_leverage), float(net)

    def _weights(self, z: torch.Tensor) -> torch.Tensor:
        z64 = z.double()
        c = self.net / z.shape[-1]
        d = z64 - z64.mean(dim=-1, keepdim=True)
        s = 1.0 if self.net >= 0 else -1.0  # side of net; assets against it are "flipped"
        slack = self.gross_leverage - abs(self.net)

        def against(a: torch.Tensor | float) -> torch.Tensor:  # -s * w per asset
            return -s * (c + a * d)

        def excess(a: torch.Tensor | float) -> torch.Tensor:  # sum|w| - |net| = 2 sum flipped
            return 2.0 * torch.relu(against(a)).sum(dim=-1, keepdim=True)

        with torch.no_grad():
            need = excess(1.0) > slack
            ones = torch.ones_like(need, dtype=torch.float64)
            _, hi = _bisect(lambda a: excess(a) <= slack, torch.zeros_like(ones), ones)
            flipped = against(hi) > 0  # non-empty where `need`, since excess(hi) > slack >= 0
        # On the piece with flipped set K: |net| - 2 s (|K| c + alpha sum_K d) = gross_leverage.
        size = flipped.sum(dim=-1, keepdim=True, dtype=torch.float64)
        denom = -2.0 * s * torch.where(flipped, d, 0.0).sum(dim=-1, keepdim=True)  # > 0
        alpha = (slack + 2.0 * s * c * size) / torch.where(need, denom, 1.0)
        alpha = torch.where(need, alpha, 1.0)
        return (c + alpha * d).to(z.dtype)

    def bounds(self, n_assets: int) -> HeadBounds:
        n, lev, net = int(n_assets), self.gross_leverage, self.net
        return HeadBounds(np.full(n, -(lev - net) / 2), np.full(n, (lev + net) / 2),
                          (net, net), lev)

    def config(self) -> dict[str, Any]:
        return {"gross_leverage": self.gross_leverage, "net": self.net}


def _sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Projection onto the simplex along the last dimension (Martins & Astudillo, 2016).

    With ``z`` sorted descending and ``k`` the largest index with
    ``1 + k z_(k) > sum_{j<=k} z_(j)``, ``tau = (sum_{j<=k} z_(j) - 1) / k``. Autograd through
    the sort and gather gives the sparsemax Jacobian.
    """
    zs, _ = torch.sort(z, dim=-1, descending=True)
    cs = zs.cumsum(dim=-1)
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    size = (1.0 + k * zs > cs).sum(dim=-1, keepdim=True)  # >= 1: true for k = 1
    tau = (cs.gather(-1, size - 1) - 1.0) / size
    return torch.clamp(z - tau, min=0.0, max=1.0)  # the max only catches rounding


def _capped_projection(z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Projection of float64 ``z`` (..., k) onto ``{0 <= w <= u, sum w = 1}``, ``sum u >= 1``.

    ``g(tau) = sum clip(z - tau, 0, u)`` falls from ``sum u`` to 0; bisection brackets the
    ``tau`` with ``g(tau) = 1``. With the free set ``F`` (strictly between the bounds) and
    capped set ``C`` there, ``tau = (sum_F z + sum_C u - 1) / |F|`` exactly, with gradient.
    """
    with torch.no_grad():
        def enough(t: torch.Tensor) -> torch.Tensor:
            return torch.minimum((z - t).clamp(min=0.0), u).sum(dim=-1, keepdim=True) >= 1.0

        lo = (z - u).amin(dim=-1, keepdim=True) - 1.0  # g(lo) = sum u >= 1
        hi = z.amax(dim=-1, keepdim=True)  # g(hi) = 0
        lo, _ = _bisect(enough, lo, hi)
        capped = z - lo >= u
        free = (z - lo > 0) & ~capped
    n_free = free.sum(dim=-1, keepdim=True)
    total = (torch.where(free, z, 0.0).sum(dim=-1, keepdim=True)
             + torch.where(capped, u, 0.0).sum(dim=-1, keepdim=True))
    tau = torch.where(n_free > 0, (total - 1.0) / n_free.clamp(min=1), lo)  # no free: any tau
    w = torch.where(capped, u, torch.where(free, z - tau, 0.0))
    return torch.minimum(w.clamp(min=0.0), u)


def _bisect(keep_low: Callable[[torch.Tensor], torch.Tensor], lo: torch.Tensor,
            hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shrink brackets ``[lo, hi]`` with ``keep_low(lo)`` true and ``keep_low(hi)`` false.

    ``keep_low`` must be true up to a point and false after it; the brackets stop at about
    float64 resolution.
    """
    for _ in range(_MAX_STEPS):
        if not bool((hi - lo > 4 * _EPS * (1.0 + lo.abs() + hi.abs())).any()):
            break
        mid = 0.5 * (lo + hi)
        ok = keep_low(mid)
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return lo, hi


HEADS: dict[str, type[AllocationHead]] = {
    "softmax": SoftmaxHead,
    "simplex": SimplexHead,
    "capped": CappedSimplexHead,
    "long_short": LongShortHead,
}


def make_head(name: str, **kwargs: Any) -> AllocationHead:
    """Build the head registered as ``name`` in :data:`HEADS` with constructor ``kwargs``.

    ``make_head(head.name, **head.config())`` rebuilds ``head``.
    """
    if name not in HEADS:
        raise ConfigError(f"Unknown head {name!r}; choose one of {', '.join(HEADS)}.")
    cls = HEADS[name]
    params = inspect.signature(cls).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(
            f"head {name!r} takes no argument {', '.join(unknown)}; "
            f"its arguments are {', '.join(params) or 'none'}."
        )
    required = [k for k, v in params.items() if v.default is inspect.Parameter.empty
                and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD) and k not in kwargs]
    if required:
        raise ConfigError(
            f"head {name!r} needs {', '.join(required)} in head_options, e.g. "
            f"head_options={{'{required[0]}': 0.1}} (in a TOML/YAML config file: "
            f"head_options = {{{required[0]} = 0.1}})."
        )
    return cls(**kwargs)
