"""The result of a walk-forward backtest, its summary table and its files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuralfolio.backtest._metrics import policy_metrics
from neuralfolio.backtest._stats import paired_bootstrap, return_statistics
from neuralfolio.errors import ConfigError

__all__ = ["BacktestResult"]


@dataclass
class BacktestResult:
    """Everything a walk-forward run produced.

    Attributes
    ----------
    weights : dict of str to DataFrame, each shape (n_dates, n_assets)
        Weights each policy decided at the close of each test date.
    next_returns : DataFrame, shape (n_dates, n_assets)
        Asset returns realized over the day after each test date.
    reference : DataFrame, shape (n_dates, n_assets)
        The daily optimizer's weights (the labels) on the test dates.
    retrain_dates : list of Timestamp
    fit_seconds : dict of str to list of float
        Time of each (re-)fit, per policy.
    update_seconds : dict of str to list of float
        Timed single updates (:meth:`Policy.weights`), per policy.
    path_gap : dict of str to float
        Largest difference between single-update and batch weights on the timed dates.
    config : dict
    """

    weights: dict[str, pd.DataFrame]
    next_returns: pd.DataFrame
    reference: pd.DataFrame
    retrain_dates: list[pd.Timestamp]
    fit_seconds: dict[str, list[float]]
    update_seconds: dict[str, list[float]]
    path_gap: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def policies(self) -> list[str]:
        return list(self.weights)

    def statistics(self, benchmark: str | None = "optimizer_daily") -> pd.DataFrame:
        """Tail-risk and active-risk figures per policy (:data:`~neuralfolio.backtest.STATISTICS`).

        Parameters
        ----------
        benchmark : str, optional
            Policy the tracking error and information ratio are measured against.

        Returns
        -------
        DataFrame, shape (n_policies, n_statistics)
        """
        returns = self.portfolio_returns()
        if benchmark is not None and benchmark not in returns:
            raise ConfigError(f"benchmark {benchmark!r} is not a policy of this run; choose "
                              f"one of {', '.join(returns)}.")
        base = None if benchmark is None else returns[benchmark].to_numpy()
        return pd.DataFrame.from_dict(
            {name: return_statistics(returns[name].to_numpy(), base) for name in returns},
            orient="index")

    def paired(self, baseline: str, statistics: tuple[str, ...] = ("volatility", "sharpe"),
               **kwargs: Any) -> pd.DataFrame:
        """Each policy against ``baseline``: differences with block-bootstrap intervals.

        Parameters
        ----------
        baseline : str
            A policy of this run.
        statistics : tuple of str
            Keys of :data:`~neuralfolio.backtest.PAIRED_STATISTICS`.
        **kwargs
            ``n_boot``, ``block``, ``confidence``, ``seed`` of
            :func:`~neuralfolio.backtest.paired_bootstrap`.

        Returns
        -------
        DataFrame
            One row per (policy, statistic): ``estimate``, ``low``, ``high`` of
            ``statistic(policy) - statistic(baseline)``.
        """
        returns = self.portfolio_returns()
        if baseline not in returns:
            raise ConfigError(f"baseline {baseline!r} is not a policy of this run; choose "
                              f"one of {', '.join(returns)}.")
        rows = {}
        for name in returns:
            if name == baseline:
                continue
            for stat in statistics:
                iv = paired_bootstrap(returns[name], returns[baseline], stat, **kwargs)
                rows[(name, stat)] = {"estimate": iv.estimate, "low": iv.low, "high": iv.high}
        return pd.DataFrame.from_dict(rows, orient="index")

    def portfolio_returns(self) -> pd.DataFrame:
        """Daily returns per policy, shape (n_dates, n_policies), indexed by decision date."""
        r = self.next_returns.to_numpy()
        return pd.DataFrame(
            {name: (w.to_numpy() * r).sum(axis=1) for name, w in self.weights.items()},
            index=self.next_returns.index,
        )

    def summary(self) -> pd.DataFrame:
        """One row per policy with the figures of :data:`~neuralfolio.backtest.METRICS`."""
        rows = {}
        for name, w in self.weights.items():
            m = policy_metrics(w, self.next_returns, self.reference)
            m["update_us"] = float(np.median(self.update_seconds[name]) * 1e6)
            m["fit_seconds"] = float(np.sum(self.fit_seconds[name]))
            rows[name] = m
        return pd.DataFrame.from_dict(rows, orient="index")

    def save(self, run_dir: str | Path) -> Path:
        """Write ``summary.json``, ``config.json``, ``returns.csv`` and ``weights/*.parquet``.

        Returns
        -------
        Path
            ``run_dir``.
        """
        run_dir = Path(run_dir)
        (run_dir / "weights").mkdir(parents=True, exist_ok=True)
        summary = self.summary()
        payload = {
            "policies": {name: {k: float(v) for k, v in row.items()}
                         for name, row in summary.iterrows()},
            "test_period": [str(self.next_returns.index[0].date()),
                            str(self.next_returns.index[-1].date())],
            "n_retrains": len(self.retrain_dates),
            "retrain_dates": [str(d.date()) for d in self.retrain_dates],
            "path_gap": self.path_gap,
        }
        (run_dir / "summary.json").write_text(json.dumps(payload, indent=2))
        (run_dir / "config.json").write_text(json.dumps(self.config, indent=2, default=str))
        self.portfolio_returns().to_csv(run_dir / "returns.csv", index_label="date")
        for name, w in self.weights.items():
            w.to_parquet(run_dir / "weights" / f"{name}.parquet")
        self.reference.to_parquet(run_dir / "weights" / "_reference_optimizer.parquet")
        return run_dir
