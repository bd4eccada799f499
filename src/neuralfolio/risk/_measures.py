"""Performance and risk measures of a portfolio's daily returns.

Conventions: returns are daily simple returns; a year has :data:`TRADING_DAYS` days.
"""

from __future__ import annotations

import numpy as np

from neuralfolio.errors import ConfigError, DataError

__all__ = [
    "TRADING_DAYS",
    "annualized_return",
    "annualized_volatility",
    "drawdowns",
    "max_drawdown",
    "risk_contributions",
    "sharpe_ratio",
    "sortino_ratio",
]

TRADING_DAYS = 252


def annualized_return(returns: np.ndarray) -> float:
    """Geometric annualized return of daily simple returns, shape (n_obs,)."""
    r = np.asarray(returns, dtype=np.float64)
    growth = np.prod(1.0 + r)
    return float(growth ** (TRADING_DAYS / len(r)) - 1.0)


def _measures():
    # skfolio takes about a second to import; only pay for it when a measure is computed.
    from skfolio import measures

    return measures


def annualized_volatility(returns: np.ndarray) -> float:
    """Annualized standard deviation of daily returns, shape (n_obs,)."""
    return float(_measures().standard_deviation(np.asarray(returns)) * np.sqrt(TRADING_DAYS))


def sharpe_ratio(returns: np.ndarray, risk_free: float = 0.0) -> float:
    """Annualized Sharpe ratio: mean daily excess return over its deviation, times sqrt(252).

    Parameters
    ----------
    returns : ndarray, shape (n_obs,)
    risk_free : float
        Annual risk-free rate, converted to a daily rate.
    """
    measures = _measures()
    excess = np.asarray(returns, dtype=np.float64) - risk_free / TRADING_DAYS
    sd = measures.standard_deviation(excess)
    return float(measures.mean(excess) / sd * np.sqrt(TRADING_DAYS)) if sd > 0 else float("nan")


def max_drawdown(returns: np.ndarray) -> float:
    """Largest peak-to-trough loss of the compounded wealth path, as a positive fraction."""
    measures = _measures()
    drawdowns = measures.get_drawdowns(np.asarray(returns, dtype=np.float64), compounded=True)
    return float(measures.max_drawdown(drawdowns))


def _return_series(returns, name: str = "returns") -> np.ndarray:
    """A non-empty, finite 1-D float array of daily returns, or a DataError."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise DataError(
            f"{name} must be one series of daily returns, shape (n_obs,), got shape {r.shape}. "
            "For several assets, compute the portfolio's returns first (returns @ weights)."
        )
    if r.size == 0:
        raise DataError(f"{name} is empty; give at least one daily return.")
    if not np.isfinite(r).all():
        bad = np.flatnonzero(~np.isfinite(r))
        raise DataError(
            f"{name} holds {bad.size} NaN or infinite value(s), the first at position "
            f"{bad[0]}. Drop or fill them before computing risk measures."
        )
    return r


def drawdowns(returns: np.ndarray) -> np.ndarray:
    """Drawdown series of the compounded wealth path.

    Wealth starts at 1 and compounds the daily returns; the drawdown on a day is wealth over
    its running peak (the start included) minus one.

    Parameters
    ----------
    returns : ndarray, shape (n_obs,)
        Daily simple returns of a portfolio.

    Returns
    -------
    ndarray, shape (n_obs,)
        Drawdowns, zero at a new peak and negative below it: -0.25 is 25% under the peak.

    Examples
    --------
    >>> drawdowns([0.10, -0.50, 0.20])  # wealth 1.1, 0.55, 0.66
    array([ 0. , -0.5, -0.4])
    """
    r = _return_series(returns)
    dd = _measures().get_drawdowns(r, compounded=True)
    return np.minimum(np.asarray(dd, dtype=np.float64), 0.0)


def sortino_ratio(returns: np.ndarray, risk_free: float = 0.0, target: float = 0.0) -> float:
    """Annualized Sortino ratio: mean daily excess return over the downside deviation.

    ``(mean(r) - risk_free / 252) / downside_deviation * sqrt(252)`` with the downside
    deviation ``sqrt(sum(min(r - target / 252, 0) ** 2) / (n_obs - 1))``: only returns below
    the target count as risk (the same ``n_obs - 1`` divisor as the Sharpe ratio's deviation).

    Parameters
    ----------
    returns : ndarray, shape (n_obs,)
        Daily simple returns, at least two.
    risk_free : float
        Annual risk-free rate, converted to a daily rate; the numerator is the excess over it.
    target : float
        Annual minimum acceptable return, converted to a daily rate; returns below it are
        the downside.

    Returns
    -------
    float
        NaN when no return falls below the target (no downside to scale by).
    """
    r = _return_series(returns)
    if r.size < 2:
        raise DataError("sortino_ratio needs at least two daily returns, got one.")
    measures = _measures()
    downside = measures.semi_deviation(r, min_acceptable_return=target / TRADING_DAYS)
    excess = measures.mean(r) - risk_free / TRADING_DAYS
    return float(excess / downside * np.sqrt(TRADING_DAYS)) if downside > 0 else float("nan")


def risk_contributions(
    weights: np.ndarray, covariance: np.ndarray, *, relative: bool = False
) -> np.ndarray:
    """Euler risk contributions of each asset to the portfolio's volatility.

    Asset ``i`` contributes ``w_i (Σw)_i / sqrt(w'Σw)``; the contributions sum to the
    portfolio volatility ``sqrt(w'Σw)``, in the units of ``covariance`` (annualize the
    covariance, times 252 for daily returns, to get contributions to annual volatility).

    Parameters
    ----------
    weights : ndarray, shape (n_assets,)
        Portfolio weights.
    covariance : ndarray, shape (n_assets, n_assets)
        Covariance matrix of the assets' returns.
    relative : bool
        If True, return each contribution's share of the volatility; the shares sum to 1
        (a negative share is a hedge).

    Returns
    -------
    ndarray, shape (n_assets,)
    """
    w = np.asarray(weights, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ConfigError(f"weights must be a non-empty 1-D array, got shape {w.shape}.")
    if cov.shape != (w.size, w.size):
        raise ConfigError(
            f"covariance must have shape ({w.size}, {w.size}) to match {w.size} weight(s), "
            f"got {cov.shape}."
        )
    if not np.isfinite(w).all():
        raise ConfigError("weights hold NaN or infinite values; give finite weights.")
    if not np.isfinite(cov).all():
        raise DataError("covariance holds NaN or infinite values; estimate it on clean data.")
    marginal = cov @ w
    variance = float(w @ marginal)
    if not variance > 0:
        raise DataError(
            f"the portfolio variance w'Σw is {variance:.3g}, not positive, so risk "
            "contributions are undefined; check the weights and the covariance."
        )
    contributions = w * marginal / np.sqrt(variance)
    return contributions / contributions.sum() if relative else contributions
