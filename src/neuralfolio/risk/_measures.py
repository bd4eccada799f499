"""Performance and risk measures of a portfolio's daily returns.

Conventions: returns are daily simple returns; a year has :data:`TRADING_DAYS` days.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "TRADING_DAYS",
    "annualized_return",
    "annualized_volatility",
    "max_drawdown",
    "sharpe_ratio",
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
