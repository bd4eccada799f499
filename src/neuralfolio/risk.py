"""Covariance estimators and risk measures of a portfolio's returns.

Conventions: returns are daily simple returns; a year has :data:`TRADING_DAYS` days.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "TRADING_DAYS",
    "annualized_return",
    "annualized_volatility",
    "ledoit_wolf",
    "max_drawdown",
    "rolling_ledoit_wolf",
    "sharpe_ratio",
]

TRADING_DAYS = 252


def ledoit_wolf(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ledoit-Wolf shrunk covariance, batched over leading axes.

    Shrinks the sample covariance towards ``mu * I`` (``mu`` the average variance) with the
    Ledoit-Wolf (2004) optimal intensity. Matches :func:`sklearn.covariance.ledoit_wolf`
    (with ``assume_centered=False``) to rounding, in plain NumPy and for many windows at once.

    Parameters
    ----------
    returns : ndarray, shape (..., n_obs, n_assets)
        One or a batch of return windows.

    Returns
    -------
    covariance : ndarray, shape (..., n_assets, n_assets)
    shrinkage : ndarray, shape (...)
        Shrinkage intensity in [0, 1].
    """
    x = np.asarray(returns, dtype=np.float64)
    n_obs, n_assets = x.shape[-2:]
    x = x - x.mean(axis=-2, keepdims=True)
    sample = np.matmul(np.swapaxes(x, -1, -2), x) / n_obs
    mu = np.trace(sample, axis1=-2, axis2=-1) / n_assets
    # beta: estimation noise of the sample covariance; delta: its distance to mu * I.
    row_norm2 = (x * x).sum(axis=-1)
    beta_sum = (row_norm2 * row_norm2).sum(axis=-1)
    delta_sum = (sample * sample).sum(axis=(-2, -1))
    beta = (beta_sum / n_obs - delta_sum) / (n_assets * n_obs)
    delta = (delta_sum - n_assets * mu**2) / n_assets
    beta = np.minimum(beta, delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        shrinkage = np.where(beta > 0, beta / np.where(delta > 0, delta, 1.0), 0.0)
    eye = np.eye(n_assets)
    s = shrinkage[..., None, None]
    covariance = (1.0 - s) * sample + s * mu[..., None, None] * eye
    return covariance, shrinkage


def rolling_ledoit_wolf(returns: np.ndarray, window: int, *, chunk: int = 512) -> np.ndarray:
    """Ledoit-Wolf covariance of every trailing window of returns.

    Parameters
    ----------
    returns : ndarray, shape (n_obs, n_assets)
    window : int
        Number of returns in each window.
    chunk : int
        Windows processed per batch (bounds memory).

    Returns
    -------
    ndarray, shape (n_obs - window + 1, n_assets, n_assets)
        Entry ``k`` is estimated from ``returns[k : k + window]``: it uses nothing after
        row ``k + window - 1``.
    """
    r = np.asarray(returns, dtype=np.float64)
    windows = sliding_window_view(r, window, axis=0)  # (n_windows, n_assets, window)
    out = np.empty((windows.shape[0], r.shape[1], r.shape[1]))
    for lo in range(0, windows.shape[0], chunk):
        block = np.swapaxes(windows[lo : lo + chunk], -1, -2)
        out[lo : lo + chunk] = ledoit_wolf(block)[0]
    return out


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
