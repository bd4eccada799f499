"""Policies: anything that maps the market seen up to a date to portfolio weights.

The same policy objects run in the walk-forward backtest and (later) in the live service.
A policy is re-fitted at re-training dates with the prices (and labels) available then, and
asked for weights in two ways that must agree:

* :meth:`Policy.weights`: one real-time update from a trailing price history (timed);
* :meth:`Policy.weights_batch`: the same for many dates at once (fast backtests).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from neuralfolio.data import simple_returns
from neuralfolio.errors import ConfigError
from neuralfolio.nn import NeuralAllocator
from neuralfolio.optimize import MinVarianceQP
from neuralfolio.risk import ledoit_wolf, rolling_ledoit_wolf

__all__ = ["EqualWeight", "MinVariancePolicy", "NeuralPolicy", "Policy"]


@runtime_checkable
class Policy(Protocol):
    """What the backtest asks of a policy.

    Attributes
    ----------
    lookback : int
        Price rows one update reads (the latest included).
    needs_labels : bool
        Whether :meth:`fit` uses label weights.
    """

    lookback: int
    needs_labels: bool

    def fit(self, prices: pd.DataFrame, labels: pd.DataFrame | None = None) -> Policy:
        """Re-fit on ``prices`` (n_dates, n_assets) and labels up to the same date."""

    def weights(self, history: np.ndarray) -> np.ndarray:
        """Weights, shape (n_assets,), from prices of shape (>= lookback, n_assets)."""

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        """Weights for each of ``dates``, shape (len(dates), n_assets), each from prices
        up to that date only."""


def _tail(prices: pd.DataFrame, dates: pd.DatetimeIndex, lookback: int) -> pd.DataFrame:
    """The rows of ``prices`` needed to compute updates for ``dates``."""
    first = prices.index.get_loc(dates[0])
    if first + 1 < lookback:
        raise ConfigError(
            f"Weights on {dates[0].date()} need {lookback} price rows, only {first + 1} exist."
        )
    return prices.iloc[first + 1 - lookback : prices.index.get_loc(dates[-1]) + 1]


class _Base:
    lookback = 1
    needs_labels = False

    def fit(self, prices: pd.DataFrame, labels: pd.DataFrame | None = None):
        return self

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        tail = _tail(prices, dates, self.lookback).to_numpy()
        offset = len(tail) - len(dates)
        rows = [self.weights(tail[: offset + i + 1]) for i in range(len(dates))]
        return pd.DataFrame(rows, index=dates, columns=prices.columns)


class EqualWeight(_Base):
    """1/N: the same weight on every asset, whatever the market does."""

    def weights(self, history: np.ndarray) -> np.ndarray:
        n = np.asarray(history).shape[1]
        return np.full(n, 1.0 / n)

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        n = prices.shape[1]
        return pd.DataFrame(1.0 / n, index=dates, columns=prices.columns)


class MinVariancePolicy(_Base):
    """Long-only minimum variance on a Ledoit-Wolf covariance of the trailing window.

    Parameters
    ----------
    window : int
        Returns per covariance window.
    resolve : {"daily", "at_fit"}
        ``daily`` re-solves at every update (the exact policy the network imitates);
        ``at_fit`` solves once per :meth:`fit` (re-training date) and holds those weights.
    """

    def __init__(self, window: int = 126, resolve: str = "daily") -> None:
        if resolve not in ("daily", "at_fit"):
            raise ConfigError(f"resolve must be 'daily' or 'at_fit', got {resolve!r}.")
        self.window = window
        self.resolve = resolve
        self.lookback = window + 1
        self._qp: MinVarianceQP | None = None

    def _solver(self, n_assets: int) -> MinVarianceQP:
        if self._qp is None or self._qp.n_assets != n_assets:
            self._qp = MinVarianceQP(n_assets)
        return self._qp

    def _solve_latest(self, history: np.ndarray) -> np.ndarray:
        tail = np.asarray(history[-self.lookback :], dtype=np.float64)
        cov = ledoit_wolf(tail[1:] / tail[:-1] - 1.0)[0]
        return self._solver(tail.shape[1]).solve(cov)

    def fit(self, prices: pd.DataFrame, labels: pd.DataFrame | None = None) -> MinVariancePolicy:
        if self.resolve == "at_fit":
            self.weights_ = self._solve_latest(prices.to_numpy())
        return self

    def weights(self, history: np.ndarray) -> np.ndarray:
        if self.resolve == "at_fit":
            return self.weights_.copy()
        return self._solve_latest(history)

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        if self.resolve == "at_fit":
            return pd.DataFrame(np.tile(self.weights_, (len(dates), 1)), index=dates,
                                columns=prices.columns)
        tail = _tail(prices, dates, self.lookback)
        covs = rolling_ledoit_wolf(simple_returns(tail).to_numpy(), self.window)
        w = self._solver(prices.shape[1]).solve_many(covs)
        return pd.DataFrame(w, index=dates, columns=prices.columns)


class NeuralPolicy(_Base):
    """A :class:`~neuralfolio.nn.NeuralAllocator` re-trained at every fit.

    Parameters
    ----------
    allocator : NeuralAllocator
        Unfitted (or fitted, to start from it) model with its feature and training config.
    fine_tune : bool
        After the first fit, continue from the previous network instead of starting over.
    refit_augment : int, optional
        Synthetic scenarios drawn afresh for each fine-tuning fit; by default a quarter of
        the allocator's ``augment`` (the network already knows the function and needs
        fewer). Ignored when ``fine_tune`` is off.
    progress : bool
        Show the training progress bar.
    """

    needs_labels = True

    def __init__(self, allocator: NeuralAllocator, *, fine_tune: bool = True,
                 refit_augment: int | None = None, progress: bool = False) -> None:
        self.allocator = allocator
        self.fine_tune = fine_tune
        self.refit_augment = (allocator.augment // 4 if refit_augment is None
                              else int(refit_augment))
        self.progress = progress
        self.lookback = allocator.features.lookback

    def fit(self, prices: pd.DataFrame, labels: pd.DataFrame | None = None) -> NeuralPolicy:
        if labels is None:
            raise ConfigError("NeuralPolicy.fit needs label weights to imitate.")
        refit = self.fine_tune and hasattr(self.allocator, "network_")
        self.allocator.fit(prices, labels, warm_start=self.fine_tune,
                           augment=self.refit_augment if refit else None,
                           progress=self.progress)
        return self

    def weights(self, history: np.ndarray) -> np.ndarray:
        return self.allocator.predict_latest(history)

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        return self.allocator.predict(_tail(prices, dates, self.lookback)).loc[dates]
