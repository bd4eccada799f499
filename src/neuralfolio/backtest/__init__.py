"""Walk-forward backtests: periodic re-training, daily weights, figures per policy."""

from neuralfolio.backtest._metrics import METRICS, drifted_weights, policy_metrics
from neuralfolio.backtest._result import BacktestResult
from neuralfolio.backtest._walkforward import walk_forward

__all__ = ["METRICS", "BacktestResult", "drifted_weights", "policy_metrics", "walk_forward"]
