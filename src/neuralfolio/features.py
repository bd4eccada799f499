"""Network inputs, computed by one piece of code for training, backtest and service.

Three formulations:

``prices`` (the course's)
    Today's raw prices, one input per asset, standardized with the mean and standard
    deviation of the training period. Kept exactly as taught. It fails out of sample
    whenever test prices leave the training range, which is a lesson worth seeing.
``risk`` (the default)
    What the minimum-variance optimizer sees, in a scale-free form: the log-volatilities of
    the Ledoit-Wolf covariance of the trailing ``window`` returns, demeaned across assets,
    followed by the upper-triangle correlations of the same matrix and, with
    ``unconstrained=True`` (the default), the unconstrained minimum-variance weights of that
    matrix, ``S^-1 1 / 1' S^-1 1`` (one linear solve, no optimizer).
    ``n_assets + n_assets * (n_assets - 1) / 2 (+ n_assets)`` inputs.
``returns``
    The trailing ``window`` daily simple returns, flattened time-major (oldest first):
    ``x.reshape(window, n_assets)`` recovers the window. For the recurrent and
    convolutional networks. ``window * n_assets`` inputs.

Inputs at date t use prices up to and including t, never later ones.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from neuralfolio.data import require_history, simple_returns
from neuralfolio.errors import ConfigError, DataError
from neuralfolio.risk import RECOMPUTE_EVERY, RollingMoments, ledoit_wolf, rolling_ledoit_wolf
from neuralfolio.risk._rolling import SolveMethod

__all__ = [
    "FEATURE_KINDS",
    "OOD_Z",
    "FeatureSpec",
    "FeatureStepper",
    "InputRange",
    "Standardizer",
    "check_price_row",
    "covariance_features",
    "feature_names",
    "latest_features",
    "make_features",
    "return_windows",
]

FeatureKind = Literal["risk", "prices", "returns"]
FEATURE_KINDS: tuple[str, ...] = ("risk", "prices", "returns")

OOD_Z = 8.0
"""Inputs further than this many training standard deviations from their training mean are
out of distribution: ``predict`` warns (or refuses), the service falls back to the optimizer."""


@dataclass(frozen=True)
class FeatureSpec:
    """Which inputs a network takes.

    Parameters
    ----------
    kind : {"risk", "prices", "returns"}
    window : int
        Trailing returns behind each covariance (``risk``) or in each input (``returns``).
    unconstrained : bool
        Append the unconstrained minimum-variance weights to the ``risk`` inputs.
    """

    kind: FeatureKind = "risk"
    window: int = 126
    unconstrained: bool = True

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ConfigError(
                f"Unknown feature kind {self.kind!r}; choose one of {', '.join(FEATURE_KINDS)}."
            )
        if self.kind != "prices" and self.window < 2:
            raise ConfigError(f"window must be >= 2 returns, got {self.window}.")

    @property
    def lookback(self) -> int:
        """Number of price rows needed to compute one input row."""
        return 1 if self.kind == "prices" else self.window + 1

    def n_features(self, n_assets: int) -> int:
        """Input width for a panel of ``n_assets``."""
        if self.kind == "prices":
            return n_assets
        if self.kind == "returns":
            return self.window * n_assets
        return n_assets + n_assets * (n_assets - 1) // 2 + n_assets * self.unconstrained

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(**d)


def covariance_features(covariances: np.ndarray, unconstrained: bool = True) -> np.ndarray:
    """Scale-free description of covariance matrices.

    Parameters
    ----------
    covariances : ndarray, shape (..., n_assets, n_assets)
        Positive definite.
    unconstrained : bool
        Append the unconstrained minimum-variance weights ``S^-1 1 / 1' S^-1 1``.

    Returns
    -------
    ndarray, shape (..., n_assets + n_assets * (n_assets - 1) / 2 (+ n_assets))
        Demeaned log-volatilities, upper-triangle correlations (row-major), then the
        unconstrained weights.
    """
    var = np.diagonal(covariances, axis1=-2, axis2=-1)
    vol = np.sqrt(var)
    log_vol = 0.5 * np.log(var)
    log_vol = log_vol - log_vol.mean(axis=-1, keepdims=True)
    rows, cols = _upper(covariances.shape[-1])
    corr = covariances[..., rows, cols] / (vol[..., rows] * vol[..., cols])
    parts = [log_vol, corr]
    if unconstrained:
        ones = np.ones((*covariances.shape[:-1], 1))
        u = np.linalg.solve(covariances, ones)[..., 0]
        parts.append(u / u.sum(axis=-1, keepdims=True))
    return np.concatenate(parts, axis=-1)


@functools.cache
def _upper(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, k=1)


@functools.cache
def _upper_flat(n: int) -> np.ndarray:
    """Flat indices of the upper triangle of an (n, n) C-order matrix, row-major."""
    rows, cols = _upper(n)
    return rows * n + cols


def _features_into(sample: np.ndarray, shrinkage: float, mu: float, u: np.ndarray | None,
                   scratch: np.ndarray) -> np.ndarray:
    """:func:`covariance_features` of the Ledoit-Wolf covariance
    ``S = (1 - shrinkage) sample + shrinkage mu I``, without forming ``S``: no (n_pairs,)
    gathers of volatilities, one pass to scale ``sample`` into correlations and one
    ``take`` of their upper triangle (equal to :func:`covariance_features` to a few ulps).

    Parameters
    ----------
    sample : ndarray, shape (n_assets, n_assets)
    shrinkage, mu : float
    u : ndarray, shape (n_assets,), or None
        The unconstrained weights of ``S``, appended when given.
    scratch : ndarray, shape (n_assets, n_assets)
        Overwritten with the correlation matrix.

    Returns
    -------
    ndarray, shape (n_assets + n_assets * (n_assets - 1) / 2 (+ n_assets),)
    """
    n = len(sample)
    n_pairs = n * (n - 1) // 2
    out = np.empty(n + n_pairs + (n if u is not None else 0))
    var = np.diagonal(sample) * (1.0 - shrinkage)
    var += shrinkage * mu  # the diagonal of S
    log_vol = out[:n]
    np.log(var, out=log_vol)
    log_vol *= 0.5
    log_vol -= log_vol.mean()
    # S_ij / (vol_i vol_j) = sample_ij w_i w_j off the diagonal, w = sqrt((1 - shrinkage) / var)
    w = np.divide(1.0 - shrinkage, var, out=var)
    np.sqrt(w, out=w)
    np.multiply(sample, w[:, None], out=scratch)
    scratch *= w
    np.take(scratch, _upper_flat(n), out=out[n:n + n_pairs])
    if u is not None:
        out[n + n_pairs:] = u
    return out


def make_features(prices: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Raw (unscaled) inputs for every date that has enough history.

    Parameters
    ----------
    prices : DataFrame, shape (n_dates, n_assets)
    spec : FeatureSpec

    Returns
    -------
    DataFrame, shape (n_dates - spec.lookback + 1, n_features)
        Row t depends on ``prices`` rows up to t only.
    """
    require_history(prices, spec.lookback, what=f"{spec.kind} features (window={spec.window})")
    if spec.kind == "prices":
        return prices.copy()
    returns = simple_returns(prices).to_numpy()
    if spec.kind == "returns":
        return pd.DataFrame(return_windows(returns, spec.window), index=prices.index[spec.window:])
    covs = rolling_ledoit_wolf(returns, spec.window)
    return pd.DataFrame(covariance_features(covs, spec.unconstrained),
                        index=prices.index[spec.window:])


def return_windows(returns: np.ndarray, window: int) -> np.ndarray:
    """Trailing windows of returns, flattened time-major.

    Parameters
    ----------
    returns : ndarray, shape (n_returns, n_assets)
    window : int

    Returns
    -------
    ndarray, shape (n_returns - window + 1, window * n_assets)
        Row ``i`` holds returns ``i .. i + window - 1`` (oldest first), asset fastest.
    """
    views = np.lib.stride_tricks.sliding_window_view(returns, window, axis=0)
    return views.transpose(0, 2, 1).reshape(len(views), -1).copy()


def latest_features(history: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Inputs for the last row of a price history: the single-update path.

    Parameters
    ----------
    history : ndarray, shape (>= spec.lookback, n_assets)
        Prices, oldest first; only the last ``spec.lookback`` rows are read.

    Returns
    -------
    ndarray, shape (n_features,)
    """
    if spec.kind == "prices":
        return np.asarray(history[-1], dtype=np.float64)
    tail = np.asarray(history[-spec.lookback :], dtype=np.float64)
    returns = tail[1:] / tail[:-1] - 1.0
    if spec.kind == "returns":
        return returns.reshape(-1)
    return covariance_features(ledoit_wolf(returns)[0], spec.unconstrained)


def check_price_row(row: np.ndarray, n_assets: int) -> np.ndarray:
    """One new row of prices as float64, shape (n_assets,), checked finite and positive.

    Raises
    ------
    DataError
        Wrong length, a non-finite or a non-positive price (the message names the column).
    """
    r = np.asarray(row, dtype=np.float64)
    if r.shape != (n_assets,):
        raise DataError(f"a price row must hold {n_assets} prices, got shape {r.shape}.")
    if not (math.isfinite(r.sum()) and r.min() > 0.0):
        bad = int(np.flatnonzero(~(np.isfinite(r) & (r > 0)))[0])
        raise DataError(f"price {bad} of the new row is {r[bad]!r}; prices must be finite "
                        "and positive (fill or drop the value before sending).")
    return r


class FeatureStepper:
    """A network's inputs kept current one price row at a time: the stepped twin of
    :func:`latest_features`.

    ``risk`` inputs come from a :class:`~neuralfolio.risk.RollingMoments` of the window's
    returns: an O(n_assets^2) update per row instead of a fresh Ledoit-Wolf estimate, the
    correlations in two passes over one (n_assets, n_assets) buffer, and the unconstrained
    weights by a direct O(n_assets^3) solve or, when the window is shorter than the
    universe (:func:`~neuralfolio.risk.woodbury_is_cheaper`), exactly through Woodbury's
    identity on the window's returns in O(window * n_assets + window^3) (see
    :meth:`~neuralfolio.risk.RollingMoments.unconstrained_weights`). ``returns`` inputs
    come from a ring of the window; ``prices`` inputs are the latest row.

    Parameters
    ----------
    spec : FeatureSpec
    recompute_every : int
        Exact rebuilds of the rolling sums (see :class:`~neuralfolio.risk.RollingMoments`).
    solve : {"auto", "woodbury", "direct"}
        How the unconstrained weights are solved; ``"auto"`` picks the cheaper by the sizes.
        All equal :func:`latest_features` to about 1e-13 relative.

    Examples
    --------
    >>> p = np.cumprod(1 + np.random.default_rng(1).normal(0, 0.01, (200, 3)), axis=0)
    >>> f = FeatureStepper(FeatureSpec(window=60)).start(p[:150])
    >>> for row in p[150:]:
    ...     f.push(row)
    >>> bool(np.allclose(f.features(), latest_features(p, FeatureSpec(window=60))))
    True
    """

    def __init__(self, spec: FeatureSpec, *, recompute_every: int = RECOMPUTE_EVERY,
                 solve: SolveMethod = "auto") -> None:
        if solve not in ("auto", "woodbury", "direct"):
            raise ConfigError(f"solve must be 'auto', 'woodbury' or 'direct', got {solve!r}.")
        self.spec = spec
        self.recompute_every = recompute_every
        self.solve = solve

    def start(self, history: np.ndarray) -> FeatureStepper:
        """Begin from a price history, shape (>= spec.lookback, n_assets), oldest first."""
        h = np.asarray(history, dtype=np.float64)
        spec = self.spec
        if h.ndim != 2 or len(h) < spec.lookback:
            raise DataError(f"a price history of shape (>= {spec.lookback}, n_assets) is "
                            f"needed for {spec.kind} inputs (window={spec.window}), got "
                            f"shape {h.shape}.")
        tail = h[-spec.lookback:]
        self.n_assets = h.shape[1]
        self._last = tail[-1].copy()
        self._raw: np.ndarray | None = None
        self._terms: tuple[np.ndarray, float, float] | None = None
        self._cov: np.ndarray | None = None
        if spec.kind == "risk":
            self._moments = RollingMoments(spec.window, recompute_every=self.recompute_every)
            self._moments.start(tail[1:] / tail[:-1] - 1.0)
            self._scratch = np.empty((self.n_assets, self.n_assets))
        elif spec.kind == "returns":
            self._ring = tail[1:] / tail[:-1] - 1.0
            self._head = 0
        return self

    def push(self, row: np.ndarray, *, check: bool = True) -> None:
        """Take the next price row, shape (n_assets,) (checked unless ``check=False``)."""
        row = check_price_row(row, self.n_assets) if check else row
        r = row / self._last - 1.0
        self._last = np.array(row, dtype=np.float64)
        self._raw = self._terms = self._cov = None
        if self.spec.kind == "risk":
            self._moments.push(r, check=False)
        elif self.spec.kind == "returns":
            self._ring[self._head] = r
            self._head = (self._head + 1) % len(self._ring)

    def _lw_terms(self) -> tuple[np.ndarray, float, float]:
        if self._terms is None:
            self._terms = self._moments.ledoit_wolf_terms()
        return self._terms

    def covariance(self) -> np.ndarray:
        """The window's Ledoit-Wolf covariance (``risk`` inputs only), shape
        (n_assets, n_assets); read-only, valid until the next push."""
        if self.spec.kind != "risk":
            raise ConfigError(f"{self.spec.kind} inputs keep no covariance.")
        if self._cov is None:
            sample, shrinkage, mu = self._lw_terms()
            self._cov = sample * (1.0 - shrinkage)
            self._cov.flat[:: self.n_assets + 1] += shrinkage * mu
        return self._cov

    def features(self) -> np.ndarray:
        """The inputs for the latest row, shape (n_features,); valid until the next push."""
        if self._raw is None:
            kind = self.spec.kind
            if kind == "prices":
                self._raw = self._last.copy()
            elif kind == "returns":
                h = self._head
                self._raw = np.concatenate([self._ring[h:], self._ring[:h]]).reshape(-1)
            else:
                terms = self._lw_terms()
                u = (self._moments.unconstrained_weights(self.solve, terms=terms,
                                                         covariance=self._cov)
                     if self.spec.unconstrained else None)
                self._raw = _features_into(*terms, u, self._scratch)
        return self._raw

    @property
    def moments(self) -> RollingMoments:
        """The rolling moments behind ``risk`` inputs."""
        return self._moments


class Standardizer:
    """Per-input z-scores with statistics of the training rows only.

    Attributes
    ----------
    mean_, scale_ : ndarray, shape (n_features,)
        Constant inputs get scale 1 so they map to zero instead of dividing by zero.
    """

    def fit(self, x: np.ndarray, passthrough: int = 0) -> Standardizer:
        """Learn mean and scale from ``x``, shape (n_obs, n_features).

        The last ``passthrough`` columns are left as they are (mean 0, scale 1).
        """
        x = np.asarray(x, dtype=np.float64)
        self.mean_ = x.mean(axis=0)
        scale = x.std(axis=0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        if passthrough:
            self.mean_[-passthrough:], self.scale_[-passthrough:] = 0.0, 1.0
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the scaling, ``x`` of shape (..., n_features)."""
        return (np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_

    @classmethod
    def from_arrays(cls, mean: np.ndarray, scale: np.ndarray) -> Standardizer:
        s = cls()
        s.mean_, s.scale_ = np.asarray(mean, dtype=np.float64), np.asarray(scale, np.float64)
        return s


def feature_names(spec: FeatureSpec, assets: list[str]) -> list[str]:
    """A readable name for each input column, in the order :func:`make_features` writes them.

    Parameters
    ----------
    spec : FeatureSpec
    assets : list of str, length n_assets

    Returns
    -------
    list of str, length ``spec.n_features(n_assets)``
        e.g. ``"price of GE"``, ``"log-volatility of GE"``, ``"correlation BAC/JPM"``,
        ``"unconstrained weight of GE"``, ``"return of GE, 3 days back"``.
    """
    assets = [str(a) for a in assets]
    if spec.kind == "prices":
        return [f"price of {a}" for a in assets]
    if spec.kind == "returns":
        return [f"return of {a}, {spec.window - 1 - t} days back" if t < spec.window - 1
                else f"return of {a}, latest" for t in range(spec.window) for a in assets]
    rows, cols = _upper(len(assets))
    names = [f"log-volatility of {a}" for a in assets]
    names += [f"correlation {assets[i]}/{assets[j]}" for i, j in zip(rows, cols, strict=True)]
    if spec.unconstrained:
        names += [f"unconstrained weight of {a}" for a in assets]
    return names


class InputRange:
    """Where a model's inputs lay in training: the guard against silent extrapolation.

    Stores the mean and standard deviation of every input over the training dates. An
    input's z-score is its distance from the training mean in training standard
    deviations. Risk inputs of another number of assets (asset-agnostic networks) are
    compared with the pooled statistics of their group (log-volatilities, correlations,
    unconstrained weights).

    Parameters
    ----------
    mean, std : ndarray, shape (n_features,)
    spec : FeatureSpec

    Examples
    --------
    >>> r = InputRange.fit(np.array([[1.0], [3.0]]), FeatureSpec("prices"))
    >>> float(r.zscores(np.array([[6.0]]))[0, 0])
    4.0
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, spec: FeatureSpec) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ConfigError(f"input mean and std must be vectors of one length, got shapes "
                              f"{self.mean.shape} and {self.std.shape}.")
        self.spec = spec

    @classmethod
    def fit(cls, x: np.ndarray, spec: FeatureSpec) -> InputRange:
        """Statistics of training inputs ``x``, shape (n_dates, n_features)."""
        x = np.asarray(x, dtype=np.float64)
        return cls(x.mean(axis=0), x.std(axis=0), spec)

    def _groups(self, n_assets: int) -> list[int]:
        n = n_assets
        return [n, n * (n - 1) // 2] + ([n] if self.spec.unconstrained else [])

    def _stats_for(self, width: int) -> tuple[np.ndarray, np.ndarray] | None:
        if width == len(self.mean):
            return self.mean, self.std
        if self.spec.kind != "risk":
            return None
        from neuralfolio.scratch.runtime import assets_in

        try:
            n_train = assets_in(len(self.mean), self.spec.unconstrained)
            n_now = assets_in(width, self.spec.unconstrained)
        except ConfigError:
            return None
        mean, std = [], []
        edges = np.cumsum([0, *self._groups(n_train)])
        for (lo, hi), size in zip(itertools.pairwise(edges), self._groups(n_now),
                                  strict=True):
            m, s = self.mean[lo:hi], self.std[lo:hi]
            if not len(m):  # one training asset: no correlations to pool
                return None
            pooled = float(m.mean())
            spread = float(np.sqrt(max((s**2 + m**2).mean() - pooled**2, 0.0)))
            mean.append(np.full(size, pooled))
            std.append(np.full(size, spread))
        return np.concatenate(mean), np.concatenate(std)

    def zscores(self, x: np.ndarray) -> np.ndarray:
        """Absolute z-scores of inputs ``x``, shape (n_dates, n_features), same shape.

        Inputs constant in training (standard deviation 0) score 0 at their training value
        and infinity elsewhere; non-finite inputs score infinity.

        Raises
        ------
        ConfigError
            ``x`` has a width these statistics cannot describe.
        """
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        stats = self._stats_for(x.shape[-1])
        if stats is None:
            raise ConfigError(
                f"inputs of width {x.shape[-1]} cannot be compared with training inputs of "
                f"width {len(self.mean)}.")
        mean, std = stats
        dev = np.abs(x - mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(std > 1e-12, dev / np.where(std > 1e-12, std, 1.0),
                         np.where(dev > 1e-9, np.inf, 0.0))
        return np.where(np.isfinite(x), z, np.inf)
