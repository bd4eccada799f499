"""Walk-forward backtests: periodic re-training, daily targets traded with drift, costs and
cash, figures and paired statistics per policy."""

from neuralfolio.backtest._metrics import METRICS, policy_metrics
from neuralfolio.backtest._result import BacktestResult
from neuralfolio.backtest._simulate import (
    REBALANCE_RULES,
    Execution,
    Simulation,
    rebalance_dates,
    simulate,
)
from neuralfolio.backtest._stats import (
    PAIRED_STATISTICS,
    STATISTICS,
    PairedInterval,
    deflated_sharpe_ratio,
    paired_bootstrap,
    return_statistics,
)
from neuralfolio.backtest._walkforward import RETRAIN_CALENDARS, retrain_starts, walk_forward

__all__ = [
    "METRICS",
    "PAIRED_STATISTICS",
    "REBALANCE_RULES",
    "RETRAIN_CALENDARS",
    "STATISTICS",
    "BacktestResult",
    "Execution",
    "PairedInterval",
    "Simulation",
    "deflated_sharpe_ratio",
    "paired_bootstrap",
    "policy_metrics",
    "rebalance_dates",
    "retrain_starts",
    "return_statistics",
    "simulate",
    "walk_forward",
]
