"""Walk-forward engine: re-fit every k test dates on the past, decide daily, realize next day."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import pandas as pd
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from neuralfolio.backtest._result import BacktestResult
from neuralfolio.data import require_history, simple_returns
from neuralfolio.errors import ConfigError, DataError
from neuralfolio.policies import Policy

__all__ = ["walk_forward"]


def walk_forward(
    prices: pd.DataFrame,
    policies: Mapping[str, Policy],
    labels: pd.DataFrame,
    *,
    test_start: str | pd.Timestamp,
    test_end: str | pd.Timestamp | None = None,
    retrain_every: int = 63,
    timed_updates: int = 4,
    progress: bool = False,
) -> BacktestResult:
    """Run every policy through the same walk-forward schedule.

    At each re-training date tau (the first test date, then every ``retrain_every`` test
    dates) each policy is fitted on prices up to tau and labels up to tau. It then decides
    weights at the close of each date t of the block, from prices up to t; those weights earn
    the returns of t+1. Nothing after t is visible to a decision at t.

    Parameters
    ----------
    prices : DataFrame, shape (n_dates, n_assets)
        Validated prices; the rows before ``test_start`` are the initial training period.
    policies : mapping of str to Policy
    labels : DataFrame, shape (n_labels, n_assets)
        The daily optimizer's weights (row t from data up to t); used to train policies that
        need labels and as the reference for the L1 figure.
    test_start, test_end : date-like
        First and last decision dates (the last is cut to the day before the panel ends).
    retrain_every : int
        Test dates between re-trainings.
    timed_updates : int
        Dates per block on which one single update per policy is timed (after one untimed
        warm-up call) and compared with the batch weights.
    progress : bool

    Returns
    -------
    BacktestResult
    """
    if retrain_every < 1:
        raise ConfigError(f"retrain_every must be >= 1 trading day, got {retrain_every}.")
    if not policies:
        raise ConfigError("No policies to backtest.")
    idx = prices.index
    start = pd.Timestamp(test_start)
    end = pd.Timestamp(test_end) if test_end is not None else idx[-1]
    test = idx[(idx >= start) & (idx <= end) & (idx < idx[-1])]
    if len(test) < 2:
        raise DataError(
            f"The test period {start.date()}..{end.date()} has {len(test)} decision date(s) in "
            f"a panel covering {idx[0].date()}..{idx[-1].date()}; it needs at least two dates "
            "followed by one more day of prices."
        )
    n_before = int(idx.get_loc(test[0]))
    lookback = max(p.lookback for p in policies.values())
    require_history(prices.iloc[: n_before + 1], lookback + 1,
                    what=f"the policies' lookback ({lookback} prices) before {test[0].date()}")
    missing = test.difference(labels.index)
    if len(missing):
        raise DataError(
            f"Labels are missing on {len(missing)} test date(s), first {missing[0].date()}; "
            "make labels from the same price panel."
        )

    next_returns = simple_returns(prices).shift(-1).loc[test]
    starts = list(range(0, len(test), retrain_every))
    weights: dict[str, list[pd.DataFrame]] = {name: [] for name in policies}
    fit_seconds: dict[str, list[float]] = {name: [] for name in policies}
    update_seconds: dict[str, list[float]] = {name: [] for name in policies}
    path_gap: dict[str, float] = dict.fromkeys(policies, 0.0)
    values = prices.to_numpy()

    bar = Progress(TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} re-trainings"),
                   TimeElapsedColumn(), disable=not progress, transient=True)
    with bar:
        task = bar.add_task("walk-forward", total=len(starts))
        for s in starts:
            block = test[s : s + retrain_every]
            tau = block[0]
            seen = prices.loc[:tau]
            seen_labels = labels.loc[:tau]
            visible = prices.loc[: block[-1]]
            timed = np.unique(np.linspace(0, len(block) - 1, min(timed_updates, len(block)),
                                          dtype=int))
            for name, policy in policies.items():
                bar.update(task, description=f"walk-forward {tau.date()} {name}")
                t0 = time.perf_counter()
                policy.fit(seen, seen_labels if policy.needs_labels else None)
                fit_seconds[name].append(time.perf_counter() - t0)
                w = policy.weights_batch(visible, block)
                # One untimed call first, as a running service is warm (lazy caches filled).
                first = int(idx.get_loc(block[0]))
                policy.weights(values[first + 1 - policy.lookback : first + 1])
                for i in timed:
                    row = int(idx.get_loc(block[i]))
                    history = values[row + 1 - policy.lookback : row + 1]
                    t0 = time.perf_counter()
                    single = policy.weights(history)
                    update_seconds[name].append(time.perf_counter() - t0)
                    gap = float(np.abs(single - w.iloc[i].to_numpy()).max())
                    path_gap[name] = max(path_gap[name], gap)
                weights[name].append(w)
            bar.advance(task)

    return BacktestResult(
        weights={name: pd.concat(parts) for name, parts in weights.items()},
        next_returns=next_returns,
        reference=labels.loc[test],
        retrain_dates=[test[s] for s in starts],
        fit_seconds=fit_seconds,
        update_seconds=update_seconds,
        path_gap=path_gap,
    )
