"""Walk-forward engine: re-fit on a schedule on the past, decide daily, realize next day."""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from neuralfolio.backtest._result import BacktestResult
from neuralfolio.backtest._simulate import Execution
from neuralfolio.data import require_history, simple_returns
from neuralfolio.errors import ConfigError, DataError
from neuralfolio.nn._train import fixed_threads
from neuralfolio.optimize._parallel import parallel_chunks, workers
from neuralfolio.policies import Policy, stepper_for

__all__ = ["RETRAIN_CALENDARS", "retrain_starts", "walk_forward"]

RETRAIN_CALENDARS = {"weekly": "W", "monthly": "M", "quarterly": "Q", "yearly": "Y"}
"""Calendar re-training schedules: re-train at the first test date of each period."""


def retrain_starts(test: pd.DatetimeIndex, every: int | str) -> list[int]:
    """Positions in ``test`` where a re-training happens (the first date always).

    Parameters
    ----------
    test : DatetimeIndex
        Decision dates.
    every : int or str
        Test dates between re-trainings, or a key of :data:`RETRAIN_CALENDARS`.
    """
    if isinstance(every, str) and every.lstrip("-").isdigit():
        every = int(every)
    if isinstance(every, str):
        if every not in RETRAIN_CALENDARS:
            raise ConfigError(f"retrain_every is a number of test dates or one of "
                              f"{', '.join(RETRAIN_CALENDARS)}; got {every!r}.")
        period = test.to_period(RETRAIN_CALENDARS[every]).asi8
        return [0, *(np.flatnonzero(period[1:] != period[:-1]) + 1).tolist()]
    if every < 1:
        raise ConfigError(f"retrain_every must be >= 1 trading day, got {every}.")
    return list(range(0, len(test), every))


def walk_forward(
    prices: pd.DataFrame,
    policies: Mapping[str, Policy],
    labels: pd.DataFrame,
    *,
    test_start: str | pd.Timestamp,
    test_end: str | pd.Timestamp | None = None,
    retrain_every: int | str = 63,
    train_window: int | None = None,
    purge: int = 0,
    execution: Execution | None = None,
    timed_updates: int = 4,
    n_jobs: int = 1,
    backend: str | None = None,
    progress: bool = False,
) -> BacktestResult:
    """Run every policy through the same walk-forward schedule.

    At each re-training date tau (the first test date, then every ``retrain_every`` test
    dates or at the start of each calendar period) each policy is fitted on the prices and
    labels of its training window, which ends ``purge`` dates before tau. It then decides
    target weights at the close of each date t of the block, from prices up to t, through
    its stepper (:meth:`~neuralfolio.policies.Policy.stepper`: started on tau, then one
    price row at a time, as the service decides); those weights earn the returns of t+1
    (through the trading simulator). Nothing after t is visible to a decision at t.

    Parameters
    ----------
    prices : DataFrame, shape (n_dates, n_assets)
        Validated prices; the rows before ``test_start`` are the initial training period.
    policies : mapping of str to Policy
        A policy with a ``rebalance`` attribute (e.g. buy-and-hold's ``"never"``) trades on
        that rule instead of ``execution``'s.
    labels : DataFrame, shape (n_labels, n_assets)
        The daily optimizer's weights (row t from data up to t); used to train policies that
        need labels and as the reference for the L1 figure.
    test_start, test_end : date-like
        First and last decision dates (the last is cut to the day before the panel ends).
    retrain_every : int or str
        Test dates between re-trainings, or a calendar: ``weekly``, ``monthly``,
        ``quarterly``, ``yearly``.
    train_window : int, optional
        Rolling training window: the newest ``train_window`` price rows up to the end of
        the training data. None: expanding (all the history).
    purge : int
        Dates left out between the end of the training data and the re-training date, so
        that no training label or outcome overlaps the test block.
    execution : Execution, optional
        Rebalancing rule, costs and cash rate (default: daily, free, no interest).
    timed_updates : int
        Dates per block on which the stepped decision is compared with the same decision
        computed from scratch (``policy.weights`` on the trailing window; the largest
        difference is ``path_gap``). Every stepped update is timed (``update_seconds``).
    n_jobs : int
        Workers (-1: every core). Policies run in parallel; the blocks of a policy that
        carries no state from one fit to the next (``carries_state`` false: optimizers,
        networks re-fitted from scratch) run in parallel too. Timings taken in parallel
        share the cores. The weights do not depend on ``n_jobs`` or ``backend``: every
        block of such a policy is fitted on a fresh copy of it, a policy that carries state
        runs through its blocks in order in one task, and networks fit and predict with a
        fixed number of PyTorch threads (:data:`neuralfolio.nn._train.TASK_THREADS`).
        The policies passed in are not modified (each task works on a copy).
    backend : str, optional
        joblib backend (``loky``, ``threading``, or a registered one such as ``ray``), the
        same as for labels.
    progress : bool

    Returns
    -------
    BacktestResult
    """
    if not policies:
        raise ConfigError("No policies to backtest.")
    if purge < 0:
        raise ConfigError(f"purge must be >= 0 dates, got {purge}.")
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
    starts = retrain_starts(test, retrain_every)
    n_before = int(idx.get_loc(test[0]))
    lookback = max(p.lookback for p in policies.values())
    require_history(prices.iloc[: n_before + 1 - purge], lookback + 1,
                    what=f"the policies' lookback ({lookback} prices) before {test[0].date()}"
                         + (f" less the purge of {purge} dates" if purge else ""))
    if train_window is not None and train_window < lookback + 1:
        raise ConfigError(
            f"train_window ({train_window} dates) must exceed the policies' lookback "
            f"({lookback} prices); use at least {lookback + 1}, or None for an expanding "
            "window.")
    missing = test.difference(labels.index)
    if len(missing):
        raise DataError(
            f"Labels are missing on {len(missing)} test date(s), first {missing[0].date()}; "
            "make labels from the same price panel."
        )

    blocks = [test[s:e] for s, e in zip(starts, [*starts[1:], len(test)], strict=True)]
    schedule = _Schedule(prices, labels, train_window, purge, timed_updates)
    # Every task works on its own copy of a policy (the caller's objects stay as they
    # were), and a policy that carries no state fits each block on a fresh copy: a block's
    # weights are then the same whether the blocks run in one task or in many.
    tasks = []
    for name, policy in policies.items():
        stateless = not getattr(policy, "carries_state", True)
        groups = _groups(len(blocks), n_jobs) if stateless else [(0, len(blocks))]
        for a, b in groups:
            tasks.append((schedule, name, copy.deepcopy(policy), blocks[a:b], stateless))
    if n_jobs == 1:
        # In process: a finer progress bar, one step per policy and re-training date.
        bar = Progress(TextColumn("{task.description}"), BarColumn(),
                       TextColumn("{task.completed}/{task.total} fits"), TimeElapsedColumn(),
                       disable=not progress, transient=True)
        with bar:
            task_id = bar.add_task("walk-forward", total=len(blocks) * len(policies))

            def tick(name: str, tau: pd.Timestamp) -> None:
                bar.update(task_id, advance=1, description=f"walk-forward {tau.date()} {name}")

            parts = [_run_blocks(*task, tick=tick) for task in tasks]
    else:
        parts = parallel_chunks(_run_blocks, tasks, n_jobs=n_jobs, backend=backend,
                                progress=progress, description="walk-forward (tasks)")

    weights: dict[str, list[pd.DataFrame]] = {name: [] for name in policies}
    fit_seconds: dict[str, list[float]] = {name: [] for name in policies}
    update_seconds: dict[str, list[float]] = {name: [] for name in policies}
    path_gap: dict[str, float] = dict.fromkeys(policies, 0.0)
    for (_, name, *_), part in zip(tasks, parts, strict=True):
        weights[name].extend(part["weights"])
        fit_seconds[name].extend(part["fit_seconds"])
        update_seconds[name].extend(part["update_seconds"])
        path_gap[name] = max(path_gap[name], part["path_gap"])

    ex = execution or Execution()
    return BacktestResult(
        weights={name: pd.concat(parts) for name, parts in weights.items()},
        next_returns=simple_returns(prices).shift(-1).loc[test],
        reference=labels.loc[test],
        retrain_dates=[test[s] for s in starts],
        fit_seconds=fit_seconds,
        update_seconds=update_seconds,
        path_gap=path_gap,
        execution={name: ex.with_rebalance(getattr(p, "rebalance", None))
                   for name, p in policies.items()},
    )


class _Schedule:
    """What a block's fit may see, shared by every task."""

    def __init__(self, prices: pd.DataFrame, labels: pd.DataFrame, train_window: int | None,
                 purge: int, timed_updates: int) -> None:
        self.prices, self.labels = prices, labels
        self.train_window, self.purge, self.timed_updates = train_window, purge, timed_updates

    def training(self, tau: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
        stop = int(self.prices.index.get_loc(tau)) + 1 - self.purge
        first = 0 if self.train_window is None else max(0, stop - self.train_window)
        seen = self.prices.iloc[first:stop]
        return seen, self.labels.loc[seen.index[0]: seen.index[-1]]


def _groups(n_blocks: int, n_jobs: int, per_job: int = 4) -> list[tuple[int, int]]:
    """Contiguous runs of blocks, ``per_job`` per worker (one when serial), so that a slow
    run does not hold the others back; the blocks' results do not depend on them."""
    n = 1 if n_jobs == 1 else max(1, min(n_blocks, per_job * workers(n_jobs)))
    edges = np.linspace(0, n_blocks, n + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def _run_blocks(schedule: _Schedule, name: str, policy: Policy,
                blocks: list[pd.DatetimeIndex], fresh: bool = False,
                tick: Callable[[str, pd.Timestamp], None] | None = None) -> dict[str, Any]:
    """Fit and decide one policy through consecutive blocks (one task, serial or parallel).

    ``fresh``: fit each block on a new copy of ``policy``, for policies that carry no
    state, so that nothing a block does reaches the next. The PyTorch thread count is
    fixed for the whole task, whatever the process or thread it runs in.
    """
    with fixed_threads():
        return _blocks(schedule, name, policy, blocks, fresh, tick)


def _blocks(schedule: _Schedule, name: str, template: Policy,
            blocks: list[pd.DatetimeIndex], fresh: bool,
            tick: Callable[[str, pd.Timestamp], None] | None) -> dict[str, Any]:
    prices, idx = schedule.prices, schedule.prices.index
    values = prices.to_numpy()
    out: dict[str, Any] = {"weights": [], "fit_seconds": [], "update_seconds": [],
                           "path_gap": 0.0}
    for block in blocks:
        policy = copy.deepcopy(template) if fresh else template
        seen, seen_labels = schedule.training(block[0])
        t0 = time.perf_counter()
        policy.fit(seen, seen_labels if policy.needs_labels else None)
        out["fit_seconds"].append(time.perf_counter() - t0)
        # The decision path of the service: a stepper started on the block's first date,
        # then one price row at a time; every step is timed.
        first = int(idx.get_loc(block[0]))
        stepper = stepper_for(policy, values[first + 1 - policy.lookback : first + 1])
        rows = np.empty((len(block), values.shape[1]))
        rows[0] = stepper.weights()
        for i in range(1, len(block)):
            row = values[first + i]
            t0 = time.perf_counter()
            rows[i] = stepper.step(row, check=False)
            out["update_seconds"].append(time.perf_counter() - t0)
        w = pd.DataFrame(rows, index=block, columns=prices.columns)
        # Checked against the same decision made from scratch on a few dates.
        timed = np.unique(np.linspace(0, len(block) - 1, min(schedule.timed_updates,
                                                             len(block)), dtype=int))
        for i in timed:
            history = values[first + i + 1 - policy.lookback : first + i + 1]
            gap = float(np.abs(policy.weights(history) - rows[i]).max())
            out["path_gap"] = max(out["path_gap"], gap)
        out["weights"].append(w)
        if tick is not None:
            tick(name, block[0])
    return out
