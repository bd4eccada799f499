"""Figures of a policy's backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuralfolio import risk

__all__ = ["METRICS", "drifted_weights", "policy_metrics"]

METRICS: dict[str, str] = {
    "annual_return": "Annualized geometric return",
    "volatility": "Annualized volatility of daily returns",
    "sharpe": "Annualized Sharpe ratio (risk-free rate 0)",
    "max_drawdown": "Largest peak-to-trough loss of wealth",
    "turnover": "Average daily turnover, sum |w_t - drifted w_(t-1)| (first trade excluded)",
    "l1_to_optimizer": "Mean L1 distance sum |w_t - w*_t| to the daily optimizer's weights",
    "update_us": "Median time of one weight update from prices, microseconds",
    "fit_seconds": "Total time spent (re-)fitting over the backtest, seconds",
}
"""Figures reported per policy, with their definitions."""


def drifted_weights(weights: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """Weights after one day of returns, before any trade.

    Parameters
    ----------
    weights : ndarray, shape (n_dates, n_assets)
        Weights held over each day.
    returns : ndarray, shape (n_dates, n_assets)
        Simple returns realized over that day.

    Returns
    -------
    ndarray, shape (n_dates, n_assets)
        ``w * (1 + r) / (1 + w . r)``.
    """
    grown = weights * (1.0 + returns)
    return grown / grown.sum(axis=1, keepdims=True)


def policy_metrics(
    weights: pd.DataFrame,
    next_returns: pd.DataFrame,
    reference: pd.DataFrame,
) -> dict[str, float]:
    """Return, risk, turnover and distance-to-optimizer figures of one policy.

    Parameters
    ----------
    weights : DataFrame, shape (n_dates, n_assets)
        Weights decided at the close of each date.
    next_returns : DataFrame, shape (n_dates, n_assets)
        Returns realized over the following day (row t holds r_(t+1)).
    reference : DataFrame, shape (n_dates, n_assets)
        The daily optimizer's weights on the same dates.

    Returns
    -------
    dict
        ``annual_return``, ``volatility``, ``sharpe``, ``max_drawdown``, ``turnover``,
        ``l1_to_optimizer`` (see :data:`METRICS`).
    """
    w = weights.to_numpy()
    r = next_returns.to_numpy()
    port = (w * r).sum(axis=1)
    before_trade = drifted_weights(w[:-1], r[:-1])
    turnover = np.abs(w[1:] - before_trade).sum(axis=1)
    return {
        "annual_return": risk.annualized_return(port),
        "volatility": risk.annualized_volatility(port),
        "sharpe": risk.sharpe_ratio(port),
        "max_drawdown": risk.max_drawdown(port),
        "turnover": float(turnover.mean()) if len(turnover) else 0.0,
        "l1_to_optimizer": float(np.abs(w - reference.to_numpy()).sum(axis=1).mean()),
    }
