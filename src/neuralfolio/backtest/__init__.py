"""Walk-forward backtests: periodic re-training, daily weights, figures per policy."""

from neuralfolio.backtest._metrics import METRICS, drifted_weights, policy_metrics
from neuralfolio.backtest._result import BacktestResult
from neuralfolio.backtest._stats import (
    PAIRED_STATISTICS,
    STATISTICS,
    PairedInterval,
    deflated_sharpe_ratio,
    paired_bootstrap,
    return_statistics,
)
from neuralfolio.backtest._walkforward import walk_forward

__all__ = [
    "METRICS",
    "PAIRED_STATISTICS",
    "STATISTICS",
    "BacktestResult",
    "PairedInterval",
    "deflated_sharpe_ratio",
    "drifted_weights",
    "paired_bootstrap",
    "policy_metrics",
    "return_statistics",
    "walk_forward",
]
