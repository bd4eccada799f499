"""Composable training losses: imitation of label weights and outcomes of realized returns.

A loss is a callable object, ``loss(weights, target=..., returns=...)``, that returns a
scalar tensor to minimize. Losses combine with ``+`` and with multiplication or division
by a number, so ``MSE() + 0.1 * Turnover()`` is itself a loss; :func:`parse_loss` builds
the same object from the text ``"mse + 0.1*turnover"``.

Inputs
------
``weights`` : tensor, shape (batch, n_assets)
    Weights decided at the close of each date, one row per date, rows in chronological
    order (oldest first).
``target`` : tensor, shape (batch, n_assets)
    Label weights, for the imitation losses (:class:`MSE`, :class:`L1`,
    :class:`CrossEntropy`, :class:`KL`).
``returns`` : tensor, shape (batch, n_assets) or (batch, horizon, n_assets)
    Simple asset returns realized *after* each decision (0.01 for 1%), for the outcome
    losses (:class:`Variance`, :class:`Volatility`, :class:`NegativeSharpe`,
    :class:`CVaR`, :class:`MaxDrawdown`).

Portfolio returns
-----------------
The outcome losses compute one statistic of a series of portfolio returns:

* 2-D ``returns`` (batch, n_assets): row ``t`` holds the next day's asset returns after
  decision ``t``, and the portfolio return is ``p[t] = returns[t] @ weights[t]``. The batch
  *is* the time series: the statistic is computed once across the batch. Variance,
  volatility, Sharpe ratio and CVaR do not depend on the order of the rows, so shuffled
  minibatches are fine for them (each minibatch is a sample of dates); the maximum
  drawdown compounds the rows in order and needs chronological, unshuffled batches.
* 3-D ``returns`` (batch, horizon, n_assets): ``returns[i, h]`` are the asset returns on
  day ``h + 1`` after decision ``i``. The weights are held for the whole horizon, with
  the portfolio rebalanced back to ``weights[i]`` every day (drift within the horizon is
  ignored): ``p[i, h] = returns[i, h] @ weights[i]``. The statistic is computed along each
  sample's path of ``horizon`` returns, then averaged over the batch.

Conventions (as :mod:`neuralfolio.risk` and skfolio): variances and deviations are sample
ones (``ddof=1``); CVaR is skfolio's empirical tail mean with the boundary observation
counted fractionally; drawdowns are measured on the compounded wealth path that starts at
1, the start counting as a peak.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Iterable
from typing import Any, ClassVar

import torch

from neuralfolio.errors import ConfigError
from neuralfolio.risk._measures import TRADING_DAYS

__all__ = [
    "KL",
    "L1",
    "LOSSES",
    "MSE",
    "CVaR",
    "CompositeLoss",
    "CrossEntropy",
    "Loss",
    "MaxDrawdown",
    "NegativeSharpe",
    "Turnover",
    "Variance",
    "Volatility",
    "parse_loss",
    "portfolio_returns",
]

_INPUTS = ("target", "returns")
_INPUT_HELP = {
    "target": "label weights of shape (batch, n_assets)",
    "returns": (
        "asset returns realized after each decision, of shape (batch, n_assets) or "
        "(batch, horizon, n_assets)"
    ),
}


# ----------------------------------------------------------------------------- helpers
def _check_inputs(
    weights: torch.Tensor, target: torch.Tensor | None, returns: torch.Tensor | None
) -> None:
    """ConfigError unless the shapes of the given inputs agree with ``weights``."""
    if not isinstance(weights, torch.Tensor) or weights.ndim != 2:
        shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights)
        raise ConfigError(
            f"weights must be a tensor of shape (batch, n_assets), got {shape}. "
            "Pass one row of weights per date, even for a single date (shape (1, n_assets))."
        )
    if target is not None and tuple(target.shape) != tuple(weights.shape):
        raise ConfigError(
            f"target has shape {tuple(target.shape)} but weights have shape "
            f"{tuple(weights.shape)}; give one row of label weights per row of weights."
        )
    if returns is not None:
        batch, n_assets = weights.shape
        ok = (returns.ndim == 2 and tuple(returns.shape) == (batch, n_assets)) or (
            returns.ndim == 3
            and returns.shape[0] == batch
            and returns.shape[2] == n_assets
            and returns.shape[1] >= 1
        )
        if not ok:
            raise ConfigError(
                f"returns has shape {tuple(returns.shape)} but weights have shape "
                f"{(batch, n_assets)}; give returns of shape ({batch}, {n_assets}) (the next "
                f"day's returns after each decision) or ({batch}, horizon, {n_assets})."
            )


def portfolio_returns(weights: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """Portfolio returns earned by holding ``weights`` over ``returns``.

    Parameters
    ----------
    weights : tensor, shape (batch, n_assets)
    returns : tensor, shape (batch, n_assets) or (batch, horizon, n_assets)
        Asset returns realized after each decision.

    Returns
    -------
    tensor, shape (batch,) or (batch, horizon)
        ``returns[t] @ weights[t]`` for 2-D returns (one series across the batch); for 3-D
        returns ``returns[i, h] @ weights[i]``, one path per sample, the weights rebalanced
        back to ``weights[i]`` every day of the horizon.
    """
    _check_inputs(weights, None, returns)
    if returns.ndim == 2:
        return (returns * weights).sum(dim=-1)
    return (returns * weights.unsqueeze(1)).sum(dim=-1)


def _coefficient(c: Any) -> float | None:
    """``c`` as a float if it is a real number (not a bool), else None."""
    if isinstance(c, bool) or not isinstance(c, numbers.Real):
        return None
    c = float(c)
    if not math.isfinite(c):
        raise ConfigError(f"A loss can only be scaled by a finite number, got {c}.")
    return c


def _format_number(c: float) -> str:
    text = repr(float(c))
    return text[:-2] if text.endswith(".0") else text


# ----------------------------------------------------------------------------- base classes
class Loss:
    """Base of all losses: a callable returning a scalar tensor to minimize.

    Losses compose: ``a + b``, ``c * a``, ``a * c`` and ``a / c`` (``c`` a number) are
    losses too (:class:`CompositeLoss`) whose value is the weighted sum of their parts.

    Attributes
    ----------
    needs : frozenset of {"target", "returns"}
        The keyword inputs the loss requires; a composite needs the union of its parts'.
    """

    needs: frozenset[str] = frozenset()

    # -- evaluation
    def __call__(
        self,
        weights: torch.Tensor,
        *,
        target: torch.Tensor | None = None,
        returns: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Evaluate the loss.

        Parameters
        ----------
        weights : tensor, shape (batch, n_assets)
            Decided weights, rows in chronological order.
        target : tensor, shape (batch, n_assets), optional
            Label weights (imitation losses).
        returns : tensor, shape (batch, n_assets) or (batch, horizon, n_assets), optional
            Asset returns realized after each decision (outcome losses).

        Returns
        -------
        tensor, shape ()
            The loss, averaged over the batch.

        Raises
        ------
        ConfigError
            An input the loss needs is missing, or shapes disagree.
        """
        _check_inputs(weights, target, returns)
        self.check({name for name, x in zip(_INPUTS, (target, returns), strict=True)
                    if x is not None})
        return self._evaluate(weights, target, returns)

    def check(self, available: Iterable[str]) -> None:
        """Raise ConfigError if an input this loss needs is not in ``available``.

        Parameters
        ----------
        available : iterable of {"target", "returns"}
            The inputs the caller will pass, e.g. ``{"target"}`` for a trainer that has
            labels but no realized returns.
        """
        missing = sorted(self.needs - set(available))
        if not missing:
            return
        name = missing[0]
        culprits = [term for _, term in self.terms if name in term.needs]
        if culprits == [self]:
            which, alternative = "", ""
        else:
            which = f" (for {', '.join(map(repr, culprits))})"
            alternative = ", or drop the terms that need it"
        raise ConfigError(
            f"Loss `{self!r}` needs `{name}`{which} but it was not given; pass "
            f"{name}=... ({_INPUT_HELP[name]}){alternative}."
        )

    def _evaluate(
        self,
        weights: torch.Tensor,
        target: torch.Tensor | None,
        returns: torch.Tensor | None,
    ) -> torch.Tensor:
        raise NotImplementedError

    # -- structure
    @property
    def terms(self) -> tuple[tuple[float, Loss], ...]:
        """The (coefficient, simple loss) pairs this loss sums."""
        return ((1.0, self),)

    @property
    def spec(self) -> str:
        """The text :func:`parse_loss` turns back into an equal loss."""
        parts = []
        for c, term in self.terms:
            text = term._spec_term()
            parts.append(text if c == 1.0 else f"{_format_number(c)}*{text}")
        return " + ".join(parts)

    def _spec_term(self) -> str:
        raise NotImplementedError(
            f"{type(self).__name__} has no text form; only the losses of LOSSES have one."
        )

    def _key(self) -> Any:
        """What identifies a simple loss in comparisons: itself, unless a subclass says."""
        return ("id", id(self))

    def _terms_key(self) -> tuple:
        return tuple((c, term._key()) for c, term in self.terms)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Loss):
            return NotImplemented
        return self._terms_key() == other._terms_key()

    def __hash__(self) -> int:
        return hash(self._terms_key())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- arithmetic
    def __add__(self, other: Any) -> Loss:
        if not isinstance(other, Loss):
            return NotImplemented
        return CompositeLoss(self.terms + other.terms)

    def __radd__(self, other: Any) -> Loss:
        # 0 + loss, so that sum() of losses works.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def __mul__(self, other: Any) -> Loss:
        c = _coefficient(other)
        if c is None:
            return NotImplemented
        return CompositeLoss(tuple((c * k, term) for k, term in self.terms))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Loss:
        c = _coefficient(other)
        if c is None:
            return NotImplemented
        if c == 0.0:
            raise ConfigError(f"Cannot divide loss {self!r} by zero.")
        return self * (1.0 / c)


class CompositeLoss(Loss):
    """A weighted sum of simple losses, built by ``+``, ``*`` and ``/`` on losses.

    Parameters
    ----------
    terms : sequence of (float, Loss)
        Coefficients and simple (non-composite) losses.
    """

    def __init__(self, terms: Iterable[tuple[float, Loss]]) -> None:
        flat: list[tuple[float, Loss]] = []
        for c, term in terms:
            flat.extend((c * k, t) for k, t in term.terms)
        if not flat:
            raise ConfigError("A composite loss needs at least one term.")
        self._terms = tuple(flat)

    @property
    def terms(self) -> tuple[tuple[float, Loss], ...]:
        return self._terms

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset().union(*(term.needs for _, term in self._terms))

    def _evaluate(self, weights, target, returns) -> torch.Tensor:
        total = None
        for c, term in self._terms:
            value = term._evaluate(weights, target, returns)
            value = value if c == 1.0 else c * value
            total = value if total is None else total + value
        return total

    def __repr__(self) -> str:
        text = ""
        for i, (c, term) in enumerate(self._terms):
            sign, c = ("-", -c) if c < 0 else ("+", c)
            body = repr(term) if c == 1.0 else f"{_format_number(c)} * {term!r}"
            if i == 0:
                text = body if sign == "+" else f"-{body}"
            else:
                text += f" {sign} {body}"
        return text


class _Simple(Loss):
    """A loss with a registry name; its parameters are its ``__init__`` arguments."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        pass

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def _params(self) -> dict[str, Any]:
        """Parameters that differ from their defaults, in signature order."""
        out = {}
        for p in inspect.signature(type(self).__init__).parameters.values():
            if p.name == "self":
                continue
            value = getattr(self, p.name)
            if value != p.default:
                out[p.name] = value
        return out

    def _key(self) -> Any:
        return (type(self), tuple(self._params().items()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def _spec_term(self) -> str:
        params = self._params()
        if not params:
            return self.name
        args = ", ".join(
            f"{k}={str(v).lower() if isinstance(v, bool) else _format_number(v)}"
            for k, v in params.items()
        )
        return f"{self.name}({args})"


def _check_eps(eps: Any, owner: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise ConfigError(f"{owner} eps must be a number >= 0, got {eps!r}.")
    return float(eps)


# ----------------------------------------------------------------------------- imitation
class _Imitation(_Simple):
    needs = frozenset({"target"})

    def _evaluate(self, weights, target, returns) -> torch.Tensor:
        return self._per_row(weights, target).mean()

    def _per_row(self, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MSE(_Imitation):
    """Squared error to the label weights: ``sum_j (w_j - y_j)**2``, averaged over the batch."""

    name = "mse"

    def _per_row(self, w, y):
        return ((w - y) ** 2).sum(dim=-1)


class L1(_Imitation):
    """Absolute error to the label weights: ``sum_j |w_j - y_j|``, averaged over the batch."""

    name = "l1"

    def _per_row(self, w, y):
        return (w - y).abs().sum(dim=-1)


class CrossEntropy(_Imitation):
    """Cross-entropy of the weights to the label weights, averaged over the batch.

    ``-sum_j y_j log(max(w_j, eps))``; meant for long-only weights that sum to one.

    Parameters
    ----------
    eps : float
        Floor on the weights inside the logarithm.
    """

    name = "cross_entropy"

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = _check_eps(eps, type(self).__name__)

    def _per_row(self, w, y):
        return -(y * torch.log(w.clamp_min(self.eps))).sum(dim=-1)


class KL(CrossEntropy):
    """Kullback-Leibler divergence from the label weights to the weights, batch mean.

    ``sum_j y_j log(y_j / max(w_j, eps))`` with ``0 log 0 = 0``: the cross-entropy less the
    labels' entropy, so it has the same gradient as :class:`CrossEntropy` and is zero when
    ``w == y``.

    Parameters
    ----------
    eps : float
        Floor on the weights inside the logarithm.
    """

    name = "kl"

    def _per_row(self, w, y):
        return torch.xlogy(y, y).sum(dim=-1) + super()._per_row(w, y)


# ----------------------------------------------------------------------------- outcome
class _Outcome(_Simple):
    """A statistic of the portfolio return series (see the module notes)."""

    needs = frozenset({"returns"})
    min_length: ClassVar[int] = 1

    def _evaluate(self, weights, target, returns) -> torch.Tensor:
        p = portfolio_returns(weights, returns)
        n = p.shape[-1]
        if n < self.min_length:
            where = (
                "the batch is the series, so use batches of at least "
                f"{self.min_length} rows (drop a short last batch)"
                if p.ndim == 1
                else f"use a horizon of at least {self.min_length} days"
            )
            raise ConfigError(
                f"{self!r} needs at least {self.min_length} portfolio returns per series, "
                f"got {n}: {where}."
            )
        return self._statistic(p).mean()

    def _statistic(self, p: torch.Tensor) -> torch.Tensor:
        """The statistic along the last axis of ``p``, shape (...,) from (..., n)."""
        raise NotImplementedError


class Variance(_Outcome):
    """Sample variance (``ddof=1``) of the portfolio's daily returns."""

    name = "variance"
    min_length = 2

    def _statistic(self, p):
        return p.var(dim=-1, correction=1)


class Volatility(_Outcome):
    """Sample standard deviation (``ddof=1``) of the portfolio's daily returns, not annualized.

    Its gradient is infinite at zero variance; prefer :class:`Variance` where the
    portfolio could be riskless.
    """

    name = "volatility"
    min_length = 2

    def _statistic(self, p):
        return p.var(dim=-1, correction=1).sqrt()


class NegativeSharpe(_Outcome):
    """Minus the Sharpe ratio of the portfolio's daily returns, no risk-free rate.

    ``-mean(p) / (std(p) + eps)`` with the sample deviation (``ddof=1``), times
    ``sqrt(252)`` when ``annualize`` is true.

    Parameters
    ----------
    eps : float
        Added to the deviation so that a riskless series does not divide by zero.
    annualize : bool
        Scale by ``sqrt(TRADING_DAYS)`` (252), as :func:`neuralfolio.risk.sharpe_ratio`.
    """

    name = "neg_sharpe"
    min_length = 2

    def __init__(self, eps: float = 1e-8, annualize: bool = False) -> None:
        self.eps = _check_eps(eps, "NegativeSharpe")
        if not isinstance(annualize, bool):
            raise ConfigError(f"NegativeSharpe annualize must be true or false, got {annualize!r}.")
        self.annualize = annualize

    def _statistic(self, p):
        sharpe = p.mean(dim=-1) / (p.std(dim=-1, correction=1) + self.eps)
        if self.annualize:
            sharpe = sharpe * math.sqrt(TRADING_DAYS)
        return -sharpe


class CVaR(_Outcome):
    """Conditional value at risk: the mean loss over the worst ``1 - confidence`` of returns.

    With ``n`` portfolio returns sorted ascending, ``x_(0) <= x_(1) <= ...``, the tail holds
    ``k = (1 - confidence) n`` observations; with ``i = ceil(k) - 1`` the ``i`` worst count
    fully and the next one with weight ``k - i``:
    ``CVaR = -(x_(0) + ... + x_(i-1) + (k - i) x_(i)) / k``, as
    :func:`skfolio.measures.cvar` (for an integer ``k``, the mean of the ``k`` worst; for
    ``k < 1`` the worst return; at confidence 1, the worst return). A positive number is
    a loss. The sort is differentiable in the returns.

    Parameters
    ----------
    confidence : float
        In [0, 1]; 0.95 averages the worst 5%.
    """

    name = "cvar"

    def __init__(self, confidence: float = 0.95) -> None:
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, numbers.Real)
            or not 0.0 <= confidence <= 1.0
        ):
            raise ConfigError(
                f"CVaR confidence must be a number in [0, 1] such as 0.95, got {confidence!r}."
            )
        self.confidence = float(confidence)

    def _statistic(self, p):
        n = p.shape[-1]
        k = (1.0 - self.confidence) * n
        if abs(k - round(k)) < 1e-12 * max(n, 1):
            k = float(round(k))  # 0.05 * 20 is 1.0000000000000009 in floating point
        x = torch.sort(p, dim=-1).values
        if k == 0.0:
            return -x[..., 0]
        i = max(0, math.ceil(k) - 1)
        return -(x[..., :i].sum(dim=-1) + (k - i) * x[..., i]) / k


class MaxDrawdown(_Outcome):
    """Maximum drawdown of the compounded wealth path, as a positive fraction.

    Wealth starts at 1 and compounds the portfolio returns, ``W_t = prod_{s<=t} (1 + p_s)``;
    the drawdown at ``t`` is ``1 - W_t / max(1, W_0, ..., W_t)`` (the start counts as a peak,
    so a first-day loss is a drawdown) and the loss is its maximum, as
    :func:`neuralfolio.risk.max_drawdown`. With 2-D returns the batch rows are compounded in
    order, so they must be consecutive dates.
    """

    name = "max_drawdown"

    def _statistic(self, p):
        wealth = torch.cumprod(1.0 + p, dim=-1)
        peak = torch.cummax(wealth, dim=-1).values.clamp_min(1.0)
        return (1.0 - wealth / peak).amax(dim=-1)


# ----------------------------------------------------------------------------- turnover
class Turnover(_Simple):
    """Mean turnover between consecutive rows of weights (buys plus sells).

    ``mean_t sum_j |w_(t, j) - w_(t-1, j)|`` over the ``batch - 1`` consecutive pairs (zero
    for a batch of one row). It treats the batch rows as consecutive dates, so it makes no
    sense on shuffled batches, and it ignores drift: the weights held before a rebalance
    are taken to be the previous decision, not that decision moved by the day's returns.
    Needs neither ``target`` nor ``returns``.
    """

    name = "turnover"

    def _evaluate(self, weights, target, returns) -> torch.Tensor:
        if weights.shape[0] < 2:
            return (weights * 0.0).sum()
        return (weights[1:] - weights[:-1]).abs().sum(dim=-1).mean()


# ----------------------------------------------------------------------------- registry
LOSSES: dict[str, type[_Simple]] = {
    cls.name: cls
    for cls in (
        MSE, L1, CrossEntropy, KL, Variance, Volatility, NegativeSharpe, CVaR, MaxDrawdown,
        Turnover,
    )
}
"""Loss classes by the name :func:`parse_loss` knows them by; call one to get a loss."""

_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_]\w*)|(?P<op>[-+*/(),=]))"
)


def _tokenize(spec: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    spec = spec.rstrip()
    while pos < len(spec):
        m = _TOKEN.match(spec, pos)
        if m is None or m.end() == pos:
            where = spec[pos:].lstrip()
            raise ConfigError(
                f"Cannot read loss {spec!r} at {where[:10]!r}; write terms such as "
                "'mse + 0.1*turnover' or 'cvar(confidence=0.99)'."
            )
        kind = m.lastgroup
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return tokens


def parse_loss(spec: str) -> Loss:
    """Build a loss from text such as ``"mse + 0.1*turnover"``.

    Grammar: terms separated by ``+``; a term is ``[number *] name [(key=value, ...)]``,
    with ``name`` a key of :data:`LOSSES`, optional keyword parameters (numbers, ``true``
    or ``false``) and spaces anywhere. ``Loss.spec`` gives text that parses back to an
    equal loss. Nothing is evaluated as Python.

    Parameters
    ----------
    spec : str
        For example ``"variance + 0.5 * max_drawdown"`` or ``"mse + 0.1*cvar(confidence=0.99)"``.

    Returns
    -------
    Loss
        A simple loss for a single unscaled term, else a :class:`CompositeLoss`.

    Raises
    ------
    ConfigError
        Unknown loss or parameter names, or malformed text.

    Examples
    --------
    >>> parse_loss("mse + 0.1*turnover")
    MSE() + 0.1 * Turnover()
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"A loss must be a non-empty text such as 'mse + 0.1*turnover', got {spec!r}."
        )
    tokens = _tokenize(spec)
    pos = 0

    def fail(expected: str) -> ConfigError:
        got = "the end"
        if pos < len(tokens):
            got = f"{tokens[pos][1]!r} at character {tokens[pos][2]}"
        return ConfigError(
            f"Cannot read loss {spec!r}: expected {expected}, got {got}. Write terms "
            "'[number*]name[(key=value)]' joined by '+', e.g. 'mse + 0.1*turnover'."
        )

    def peek(kind: str, value: str | None = None) -> bool:
        return (
            pos < len(tokens)
            and tokens[pos][0] == kind
            and (value is None or tokens[pos][1] == value)
        )

    def expect(kind: str, value: str | None, what: str) -> str:
        nonlocal pos
        if not peek(kind, value):
            raise fail(what)
        pos += 1
        return tokens[pos - 1][1]

    def value_of(text: str, kind: str) -> Any:
        if kind == "number":
            return float(text)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise fail("a number, true or false")

    def term() -> Loss:
        nonlocal pos
        coef = 1.0
        if peek("number"):
            coef = float(expect("number", None, "a number"))
            expect("op", "*", "'*' after the coefficient")
        name = expect("name", None, "a loss name").lower()
        if name not in LOSSES:
            raise ConfigError(
                f"Unknown loss {name!r} in {spec!r}; choose from {', '.join(LOSSES)}."
            )
        cls = LOSSES[name]
        kwargs: dict[str, Any] = {}
        if peek("op", "("):
            pos += 1
            allowed = cls._param_names()
            while not peek("op", ")"):
                key = expect("name", None, "a parameter name")
                if key not in allowed:
                    accepted = ", ".join(allowed) if allowed else "none"
                    raise ConfigError(
                        f"Loss {name!r} has no parameter {key!r} (in {spec!r}); "
                        f"it accepts: {accepted}."
                    )
                expect("op", "=", f"'=' after {key!r}")
                if pos >= len(tokens) or tokens[pos][0] not in ("number", "name"):
                    raise fail(f"a value for {key!r}")
                kwargs[key] = value_of(tokens[pos][1], tokens[pos][0])
                pos += 1
                if not peek("op", ")"):
                    expect("op", ",", "',' or ')'")
            pos += 1
        loss = cls(**kwargs)
        return loss if coef == 1.0 else coef * loss

    result = term()
    while pos < len(tokens):
        expect("op", "+", "'+' between terms")
        result = result + term()
    return result
