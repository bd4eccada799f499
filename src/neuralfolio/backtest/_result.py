"""The result of a walk-forward backtest, its summary table and its files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuralfolio.backtest._metrics import policy_metrics
from neuralfolio.backtest._simulate import Execution, Simulation, simulate
from neuralfolio.backtest._stats import paired_bootstrap, return_statistics
from neuralfolio.errors import ConfigError, DataError

__all__ = ["BacktestResult"]


@dataclass
class BacktestResult:
    """Everything a walk-forward run produced.

    Attributes
    ----------
    weights : dict of str to DataFrame, each shape (n_dates, n_assets)
        Target weights each policy decided at the close of each test date; what it holds
        follows from its :class:`Execution` (:meth:`simulation`).
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
    execution : dict of str to Execution
        Rebalancing, costs and cash per policy (missing: daily, no costs, no interest).
    """

    weights: dict[str, pd.DataFrame]
    next_returns: pd.DataFrame
    reference: pd.DataFrame
    retrain_dates: list[pd.Timestamp]
    fit_seconds: dict[str, list[float]]
    update_seconds: dict[str, list[float]]
    path_gap: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    execution: dict[str, Execution] = field(default_factory=dict)
    _simulations: dict[str, Simulation] = field(default_factory=dict, init=False, repr=False)
    _paired: dict[tuple, pd.DataFrame] = field(default_factory=dict, init=False, repr=False)

    @property
    def policies(self) -> list[str]:
        return list(self.weights)

    def simulation(self, name: str) -> Simulation:
        """The traded path of policy ``name``: drift, rebalances, costs and cash (cached)."""
        if name not in self.weights:
            raise ConfigError(f"{name!r} is not a policy of this run; choose one of "
                              f"{', '.join(self.weights)}.")
        if name not in self._simulations:
            self._simulations[name] = simulate(self.weights[name], self.next_returns,
                                               self.execution.get(name))
        return self._simulations[name]

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
        key = (baseline, tuple(statistics), tuple(sorted(kwargs.items())))
        if key in self._paired:  # the CLI and the report ask for the same intervals
            return self._paired[key].copy()
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
        self._paired[key] = pd.DataFrame.from_dict(rows, orient="index")
        return self._paired[key].copy()

    def portfolio_returns(self) -> pd.DataFrame:
        """Daily net returns per policy, shape (n_dates, n_policies), indexed by decision
        date (the return is realized over the next day)."""
        return pd.DataFrame({name: self.simulation(name).returns for name in self.weights},
                            index=self.next_returns.index)

    def summary(self) -> pd.DataFrame:
        """One row per policy with the figures of :data:`~neuralfolio.backtest.METRICS`."""
        rows = {}
        for name, w in self.weights.items():
            m = policy_metrics(self.simulation(name), w, self.reference)
            m["update_us"] = float(np.median(self.update_seconds[name]) * 1e6)
            m["fit_seconds"] = float(np.sum(self.fit_seconds[name]))
            rows[name] = m
        return pd.DataFrame.from_dict(rows, orient="index")

    def save(self, run_dir: str | Path) -> Path:
        """Write the run: ``summary.json``, ``config.json``, ``returns.csv`` (net returns per
        policy), ``run.json`` (schedule, timings, execution) and ``weights/*.parquet``
        (targets, the reference and the next-day asset returns). :meth:`load` reads it back.

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
        run = {
            "format": 1,
            "policies": self.policies,
            "retrain_dates": [d.isoformat() for d in self.retrain_dates],
            "fit_seconds": self.fit_seconds,
            "update_seconds": self.update_seconds,
            "path_gap": self.path_gap,
            "execution": {name: ex.to_dict() for name, ex in self.execution.items()},
        }
        (run_dir / "run.json").write_text(json.dumps(run, indent=2))
        self.portfolio_returns().to_csv(run_dir / "returns.csv", index_label="date")
        for name, w in self.weights.items():
            w.to_parquet(run_dir / "weights" / f"{name}.parquet")
        self.reference.to_parquet(run_dir / "weights" / "_reference_optimizer.parquet")
        self.next_returns.to_parquet(run_dir / "weights" / "_next_returns.parquet")
        return run_dir

    @classmethod
    def load(cls, run_dir: str | Path) -> BacktestResult:
        """Read a run written by :meth:`save`.

        Raises
        ------
        DataError
            The directory is not a saved run (or was written before ``run.json`` existed).
        """
        run_dir = Path(run_dir)
        meta = run_dir / "run.json"
        if not meta.exists():
            raise DataError(
                f"{run_dir} is not a saved backtest run (no run.json); write one with "
                "`neuralfolio backtest --out DIR` or BacktestResult.save(DIR).")
        run = json.loads(meta.read_text())
        weights_dir = run_dir / "weights"
        try:
            weights = {name: pd.read_parquet(weights_dir / f"{name}.parquet")
                       for name in run["policies"]}
            reference = pd.read_parquet(weights_dir / "_reference_optimizer.parquet")
            next_returns = pd.read_parquet(weights_dir / "_next_returns.parquet")
        except FileNotFoundError as exc:
            raise DataError(f"{run_dir}: the run is incomplete, {exc.filename} is missing; "
                            "run the backtest again.") from None
        config_file = run_dir / "config.json"
        return cls(
            weights=weights, next_returns=next_returns, reference=reference,
            retrain_dates=[pd.Timestamp(d) for d in run["retrain_dates"]],
            fit_seconds=run["fit_seconds"], update_seconds=run["update_seconds"],
            path_gap=run.get("path_gap", {}),
            config=json.loads(config_file.read_text()) if config_file.exists() else {},
            execution={name: Execution(**ex) for name, ex in run["execution"].items()},
        )
