"""Figures of a policy's backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuralfolio import risk
from neuralfolio.backtest._simulate import Simulation

__all__ = ["METRICS", "policy_metrics"]

METRICS: dict[str, str] = {
    "annual_return": "Annualized geometric return, net of costs",
    "volatility": "Annualized volatility of daily net returns",
    "sharpe": "Annualized Sharpe ratio of net returns (risk-free rate 0)",
    "max_drawdown": "Largest peak-to-trough loss of wealth",
    "turnover": "Average amount traded per date as a fraction of wealth, sum |target - "
                "drifted weight| on rebalance dates (the first trade, out of cash, excluded)",
    "cost": "Annual drag of transaction costs on return",
    "l1_to_optimizer": "Mean L1 distance sum |w_t - w*_t| of the decided weights to the daily "
                       "optimizer's weights",
    "update_us": "Median time of one weight update from prices, microseconds",
    "fit_seconds": "Total time spent (re-)fitting over the backtest, seconds",
}
"""Figures reported per policy, with their definitions."""


def policy_metrics(
    simulation: Simulation,
    weights: pd.DataFrame,
    reference: pd.DataFrame,
) -> dict[str, float]:
    """Return, risk, trading and distance-to-optimizer figures of one policy.

    Parameters
    ----------
    simulation : Simulation
        The policy's simulated path (:func:`~neuralfolio.backtest.simulate`).
    weights : DataFrame, shape (n_dates, n_assets)
        Target weights the policy decided at the close of each date.
    reference : DataFrame, shape (n_dates, n_assets)
        The daily optimizer's weights on the same dates.

    Returns
    -------
    dict
        ``annual_return``, ``volatility``, ``sharpe``, ``max_drawdown``, ``turnover``,
        ``cost``, ``l1_to_optimizer`` (see :data:`METRICS`).
    """
    port = simulation.returns.to_numpy()
    return {
        "annual_return": risk.annualized_return(port),
        "volatility": risk.annualized_volatility(port),
        "sharpe": risk.sharpe_ratio(port),
        "max_drawdown": risk.max_drawdown(port),
        "turnover": simulation.turnover(),
        "cost": simulation.annual_cost(risk.TRADING_DAYS),
        "l1_to_optimizer": float(np.abs(weights.to_numpy() - reference.to_numpy())
                                 .sum(axis=1).mean()),
    }
