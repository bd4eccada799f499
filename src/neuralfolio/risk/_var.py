"""Value at risk (VaR) and conditional value at risk (CVaR) of a portfolio.

Conventions
-----------
* Input: daily simple returns of one portfolio, shape ``(n_obs,)``; or asset returns of shape
  ``(n_obs, n_assets)`` together with ``weights`` of shape ``(n_assets,)``, from which the
  portfolio's series ``returns @ weights`` is formed first (weights held constant, that is
  rebalanced daily).
* Output: a loss as a fraction of the portfolio's value, **positive for a loss**: 0.031 means
  the portfolio loses 3.1% of its value. A negative result means that even the tail outcome
  is a gain.
* ``confidence`` ``c`` in (0, 1): VaR is the loss exceeded with probability at most ``1 - c``;
  CVaR (expected shortfall) is the mean loss over the worst ``1 - c`` of outcomes, so
  CVaR >= VaR.
* ``horizon`` ``h`` in trading days. Each method scales to ``h`` days its own way:

  ``historical``
      Empirical quantile of the observed returns; for ``h > 1`` of the overlapping ``h``-day
      compounded returns ``prod(1 + r[t : t + h]) - 1``, one per start day
      (``n_obs - h + 1`` of them, strongly dependent). Refused when fewer than
      ``2 / (1 - c)`` such ``h``-day returns exist (200 at 99%, 40 at 95%), too few for
      the tail to hold two observations. At ``h = 1`` any non-empty sample is used as it is
      (with 20 returns the 99% VaR is simply the largest loss).
  ``normal``
      Normal with the sample mean ``mu`` and standard deviation ``sigma`` (``n_obs - 1``
      divisor) of the daily returns; ``h``-day mean ``h mu`` and deviation ``sqrt(h) sigma``.
  ``student_t``
      Student-t with degrees of freedom ``nu`` fitted by maximum likelihood
      (:func:`scipy.stats.t.fit`), floored at 3, located at the sample mean and scaled so its
      variance equals the sample variance (:func:`fit_student_t`); ``h``-day mean ``h mu``
      and scale ``sqrt(h)`` times the daily scale, keeping ``nu`` (an approximation: a sum
      of t variables is not t).
  ``monte_carlo``
      ``n_simulations`` paths of ``h`` daily returns drawn independently from the fitted
      normal (sample mean and deviation, as ``normal``), compounded to ``h``-day returns;
      VaR and CVaR are the empirical ones of the simulated sample (daily draws below -100%
      are clipped to -100%). With ``h = 1`` it converges to ``normal``; for ``h > 1`` it
      differs from ``normal`` by compounding only, which makes ``h``-day losses smaller by
      roughly ``z sigma sqrt(h) / 2`` relative (about 3% at 99%, 10 days and 1% daily
      deviation; under 1% at 0.2% daily deviation).

Empirical quantiles (``historical``, ``monte_carlo``) follow :func:`skfolio.measures.value_at_risk`
and :func:`skfolio.measures.cvar`: with ``n`` outcomes and ``k = (1 - c) n``, VaR is the
``(floor(k) + 1)``-th largest loss and CVaR the mean of the worst ``k`` outcomes (the
``ceil(k)``-th largest counted fractionally), which for an integer ``k`` is the mean of the
``k`` losses beyond the VaR.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings

import numpy as np

from neuralfolio.errors import ConfigError, DataError

__all__ = ["VAR_METHODS", "conditional_value_at_risk", "fit_student_t", "value_at_risk"]

VAR_METHODS = ("historical", "normal", "student_t", "monte_carlo")
"""The VaR and CVaR methods, in the order reports list them."""

_MIN_DF = 3.0
_MIN_OBS = {"historical": 1, "normal": 2, "student_t": 10, "monte_carlo": 2}


# ----------------------------------------------------------------------------- checks
def _check_confidence(confidence) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        raise ConfigError(
            f"confidence must be a number between 0 and 1 such as 0.95 or 0.99, got "
            f"{confidence!r}."
        )
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ConfigError(
            f"confidence must lie strictly between 0 and 1 (e.g. 0.95 or 0.99), got {c!r}; "
            "give 99% as 0.99."
        )
    return c


def _check_horizon(horizon) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral):
        raise ConfigError(
            f"horizon must be a whole number of trading days (1, 10, ...), got {horizon!r}."
        )
    if horizon < 1:
        raise ConfigError(f"horizon must be at least 1 trading day, got {horizon}.")
    return int(horizon)


def _check_method(method) -> str:
    if method not in VAR_METHODS:
        raise ConfigError(
            f"method must be one of {', '.join(repr(m) for m in VAR_METHODS)}, got {method!r}."
        )
    return method


def _portfolio_returns(returns, weights) -> np.ndarray:
    try:
        r = np.asarray(returns, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(
            "returns must be numbers: daily simple returns of shape (n_obs,) or "
            "(n_obs, n_assets)."
        ) from None
    if r.ndim == 2:
        if weights is None:
            raise ConfigError(
                f"returns has shape {r.shape}, one column per asset; give weights of shape "
                f"({r.shape[1]},) to form the portfolio, or pass the portfolio's returns."
            )
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (r.shape[1],):
            raise ConfigError(
                f"weights has shape {w.shape}; it needs one weight per asset column of "
                f"returns, shape ({r.shape[1]},)."
            )
        if not np.isfinite(w).all():
            raise ConfigError("weights hold NaN or infinite values; give finite weights.")
    elif r.ndim == 1:
        if weights is not None:
            raise ConfigError(
                "weights were given but returns is one series, shape (n_obs,); give asset "
                "returns of shape (n_obs, n_assets) with weights, or drop weights."
            )
    else:
        raise DataError(
            f"returns must have shape (n_obs,) or (n_obs, n_assets), got {r.shape}."
        )
    if r.shape[0] == 0:
        raise DataError("returns is empty; give at least one daily return.")
    if not np.isfinite(r).all():
        n_bad = int((~np.isfinite(r)).sum())
        first = int(np.flatnonzero(~np.isfinite(r).reshape(r.shape[0], -1).all(axis=1))[0])
        raise DataError(
            f"returns holds {n_bad} NaN or infinite value(s), the first in row {first}. "
            "Drop or fill missing returns before computing VaR."
        )
    if r.ndim == 2:
        r = r @ w
    if (r < -1.0).any():
        raise DataError(
            f"returns holds a simple return of {r.min():.4g}, below -1 (a loss of more than "
            "100%); give simple returns (0.01 for 1%), not percentages or log prices."
        )
    return r


def _min_historical_obs(confidence: float) -> int:
    """Fewest h-day returns the historical method accepts at this confidence."""
    return math.ceil(2.0 / (1.0 - confidence) - 1e-9)


def _horizon_returns(r: np.ndarray, horizon: int, confidence: float) -> np.ndarray:
    """Overlapping ``horizon``-day compounded returns, refused if too few."""
    if horizon == 1:
        return r
    n_windows = r.size - horizon + 1
    need = _min_historical_obs(confidence)
    if n_windows < need:
        raise ConfigError(
            f"historical VaR at confidence {confidence:g} over horizon {horizon} needs at "
            f"least {need} overlapping {horizon}-day returns, that is {need + horizon - 1} "
            f"daily returns; got {r.size} ({max(n_windows, 0)} windows). Give a longer "
            "history, a shorter horizon or a lower confidence, or use a parametric method."
        )
    windows = np.lib.stride_tricks.sliding_window_view(1.0 + r, horizon)
    return np.prod(windows, axis=1) - 1.0


def _moments(r: np.ndarray) -> tuple[float, float]:
    return float(r.mean()), float(r.std(ddof=1))


@functools.lru_cache(maxsize=16)
def _standardized_t_fit(data: bytes) -> float:
    # Keyed on the bytes of the standardized returns: a report asks for the same fit at
    # every confidence and horizon, and each fit is an optimization.
    from scipy import stats

    z = np.frombuffer(data, dtype=np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        df = float(stats.t.fit(z)[0])
    if not np.isfinite(df) or df > 1e6:
        df = 1e6
    return max(df, _MIN_DF)


def fit_student_t(returns, weights=None) -> tuple[float, float, float]:
    """Student-t parameters of daily returns as the ``student_t`` method uses them.

    The degrees of freedom are fitted by maximum likelihood (:func:`scipy.stats.t.fit` on
    the standardized returns, where location and scale are fitted too, then set aside) and
    floored at 3: a t with unit variance needs ``nu > 2``, and as ``nu`` falls towards 2 its
    quantiles at usual confidence levels shrink, so heavier fitted tails would lower the VaR.
    The location is the sample mean and the scale is ``sigma * sqrt((nu - 2) / nu)`` so the
    distribution's variance equals the sample variance ``sigma**2``.

    Parameters
    ----------
    returns : ndarray, shape (n_obs,) or (n_obs, n_assets)
        Daily simple returns, at least 10.
    weights : ndarray, shape (n_assets,), optional
        Required with 2-D returns.

    Returns
    -------
    df, loc, scale : float
        Parameters of :data:`scipy.stats.t` for one day's return.
    """
    r = _portfolio_returns(returns, weights)
    _check_length(r, "student_t")
    mu, sigma = _moments(r)
    if sigma == 0:
        return math.inf, mu, 0.0
    df = _standardized_t_fit(((r - mu) / sigma).tobytes())
    return df, mu, sigma * math.sqrt((df - 2.0) / df)


def _check_length(r: np.ndarray, method: str) -> None:
    need = _MIN_OBS[method]
    if r.size < need:
        raise DataError(
            f"method {method!r} needs at least {need} daily returns, got {r.size}; give a "
            "longer history."
        )


# ------------------------------------------------------------------------------ core
def _tail_loss(returns, confidence, horizon, method, n_simulations, seed, weights, *,
               conditional: bool) -> float:
    c = _check_confidence(confidence)
    h = _check_horizon(horizon)
    method = _check_method(method)
    if method == "monte_carlo" and (
        isinstance(n_simulations, bool) or not isinstance(n_simulations, numbers.Integral)
        or n_simulations < _min_historical_obs(c)
    ):
        raise ConfigError(
            f"n_simulations must be a whole number of at least {_min_historical_obs(c)} at "
            f"confidence {c:g} (100_000 is a good default), got {n_simulations!r}."
        )
    r = _portfolio_returns(returns, weights)
    _check_length(r, method)

    if method == "historical":
        from skfolio import measures

        sample = _horizon_returns(r, h, c)
        fn = measures.cvar if conditional else measures.value_at_risk
        return float(fn(sample, beta=c))

    if method == "monte_carlo":
        from skfolio import measures

        mu, sigma = _moments(r)
        rng = np.random.default_rng(seed)
        wealth = np.ones(int(n_simulations))
        for _ in range(h):
            daily = rng.normal(mu, sigma, size=wealth.size)
            wealth *= 1.0 + np.maximum(daily, -1.0)
        fn = measures.cvar if conditional else measures.value_at_risk
        return float(fn(wealth - 1.0, beta=c))

    from scipy import stats

    if method == "normal":
        mu, sigma = _moments(r)
        z = stats.norm.ppf(c)
        tail = stats.norm.pdf(z) / (1.0 - c) if conditional else z
        return float(-h * mu + math.sqrt(h) * sigma * tail)

    df, mu, scale = fit_student_t(r)
    if scale == 0:
        return float(-h * mu)
    q = stats.t.ppf(c, df)
    tail = stats.t.pdf(q, df) / (1.0 - c) * (df + q * q) / (df - 1.0) if conditional else q
    return float(-h * mu + math.sqrt(h) * scale * tail)


def value_at_risk(
    returns,
    confidence: float = 0.95,
    horizon: int = 1,
    method: str = "historical",
    n_simulations: int = 100_000,
    seed: int | None = 0,
    weights=None,
) -> float:
    """Value at risk: the loss exceeded with probability at most ``1 - confidence``.

    Closed forms, with ``mu``, ``sigma`` the daily sample mean and deviation, ``h`` the
    horizon and ``c`` the confidence: ``normal`` gives ``-h mu + sqrt(h) sigma z`` with
    ``z = norm.ppf(c)``; ``student_t`` gives ``-h mu + sqrt(h) s t.ppf(c, nu)`` with ``nu``
    and ``s`` from :func:`fit_student_t`. ``historical`` and ``monte_carlo`` take the
    empirical quantile (see the module notes).

    Parameters
    ----------
    returns : ndarray, shape (n_obs,) or (n_obs, n_assets)
        Daily simple returns of the portfolio (0.01 for 1%), oldest first; or of its assets,
        with ``weights``. NaN is refused.
    confidence : float
        Confidence level in (0, 1), e.g. 0.95 or 0.99.
    horizon : int
        Holding period in trading days, at least 1 (10 for the regulatory 10-day VaR).
    method : {"historical", "normal", "student_t", "monte_carlo"}
        How the return distribution is modelled and scaled to the horizon; see the module
        notes of :mod:`neuralfolio.risk._var`.
    n_simulations : int
        Simulated paths (``monte_carlo`` only).
    seed : int or None
        Seed of the simulation (``monte_carlo`` only); the same seed gives the same paths.
    weights : ndarray, shape (n_assets,), optional
        Portfolio weights, required when ``returns`` has one column per asset.

    Returns
    -------
    float
        Loss as a positive fraction of the portfolio's value over ``horizon`` days.

    Raises
    ------
    ConfigError
        Bad ``confidence``, ``horizon``, ``method``, ``n_simulations`` or ``weights``, or
        too short a history for ``historical`` at this horizon and confidence.
    DataError
        Empty returns, NaN or infinite values, or fewer returns than the method needs.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = rng.normal(0.0005, 0.01, 1000)
    >>> round(value_at_risk(r, 0.99, horizon=10, method="normal"), 4)
    0.0822
    """
    return _tail_loss(returns, confidence, horizon, method, n_simulations, seed, weights,
                      conditional=False)


def conditional_value_at_risk(
    returns,
    confidence: float = 0.95,
    horizon: int = 1,
    method: str = "historical",
    n_simulations: int = 100_000,
    seed: int | None = 0,
    weights=None,
) -> float:
    """Conditional value at risk (expected shortfall): the expected loss beyond the VaR.

    The mean loss over the worst ``1 - confidence`` of outcomes, so never below the VaR.
    Closed forms (notation of :func:`value_at_risk`): ``normal`` gives
    ``-h mu + sqrt(h) sigma norm.pdf(z) / (1 - c)``; ``student_t`` gives
    ``-h mu + sqrt(h) s t.pdf(q, nu) / (1 - c) * (nu + q**2) / (nu - 1)`` with
    ``q = t.ppf(c, nu)``. ``historical`` and ``monte_carlo`` average the empirical tail
    (see the module notes).

    Parameters
    ----------
    returns : ndarray, shape (n_obs,) or (n_obs, n_assets)
        Daily simple returns of the portfolio (0.01 for 1%), oldest first; or of its assets,
        with ``weights``. NaN is refused.
    confidence : float
        Confidence level in (0, 1), e.g. 0.95 or 0.99.
    horizon : int
        Holding period in trading days, at least 1 (10 for the regulatory 10-day VaR).
    method : {"historical", "normal", "student_t", "monte_carlo"}
        How the return distribution is modelled and scaled to the horizon; see the module
        notes of :mod:`neuralfolio.risk._var`.
    n_simulations : int
        Simulated paths (``monte_carlo`` only).
    seed : int or None
        Seed of the simulation (``monte_carlo`` only); the same seed gives the same paths.
    weights : ndarray, shape (n_assets,), optional
        Portfolio weights, required when ``returns`` has one column per asset.

    Returns
    -------
    float
        Loss as a positive fraction of the portfolio's value over ``horizon`` days.

    Raises
    ------
    ConfigError
        Bad ``confidence``, ``horizon``, ``method``, ``n_simulations`` or ``weights``, or
        too short a history for ``historical`` at this horizon and confidence.
    DataError
        Empty returns, NaN or infinite values, or fewer returns than the method needs.
    """
    return _tail_loss(returns, confidence, horizon, method, n_simulations, seed, weights,
                      conditional=True)
