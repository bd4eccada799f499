"""Policies: anything that maps the market seen up to a date to portfolio weights.

The same policy objects run in the walk-forward backtest and (later) in the live service.
A policy is re-fitted at re-training dates with the prices (and labels) available then, and
asked for weights in two ways that must agree:

* :meth:`Policy.stepper`: the decision path of the backtest and of the service. A stepper
  starts from a price history and then takes one price row at a time, updating its state
  incrementally (rolling moments, Ledoit-Wolf terms, network inputs) and answering the
  weights for the latest row (:class:`Stepper`);
* :meth:`Policy.weights`: one update from a trailing price history, computed from scratch
  (the reference the stepped path is checked against);
* :meth:`Policy.weights_batch`: the same for many dates at once (research, fast checks).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from neuralfolio.data import simple_returns
from neuralfolio.errors import ConfigError, DataError
from neuralfolio.features import FeatureStepper, check_price_row
from neuralfolio.nn import NeuralAllocator
from neuralfolio.nn._train import exclusive_rng, fixed_threads
from neuralfolio.optimize import OBJECTIVES, Constraints, PortfolioSolver
from neuralfolio.risk import RollingMoments, ledoit_wolf, rolling_covariances, sample_covariance

__all__ = [
    "BuyAndHold",
    "EqualWeight",
    "FeatureNetworkStepper",
    "InverseVolatility",
    "MinVariancePolicy",
    "NeuralPolicy",
    "OptimizerPolicy",
    "Policy",
    "RuntimePolicy",
    "SkfolioPolicy",
    "Stepper",
    "WindowStepper",
    "stepper_for",
]


@runtime_checkable
class Policy(Protocol):
    """What the backtest asks of a policy.

    Attributes
    ----------
    lookback : int
        Price rows one update reads (the latest included).
    needs_labels : bool
        Whether :meth:`fit` uses label weights.
    carries_state : bool, optional
        Whether a fit builds on the previous one (a fine-tuned network); policies without
        it may be fitted for different re-training dates in parallel (the walk-forward fits
        each date on a fresh copy of them). Assumed true when missing.
    rebalance : str, optional
        A rebalancing rule of its own (:data:`~neuralfolio.backtest.REBALANCE_RULES`),
        e.g. ``"never"`` for buy-and-hold; when missing the run's rule applies.
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

    def stepper(self, history: np.ndarray) -> Stepper:
        """A :class:`Stepper` started from prices of shape (>= lookback, n_assets); optional
        (:func:`stepper_for` gives any policy one)."""


class Stepper:
    """A policy's running state between price rows: one decision per row.

    ``stepper = policy.stepper(history)`` starts from a price history (its
    :meth:`weights` are those of the history's last row); :meth:`push` takes the next
    price row and updates the state, :meth:`weights` answers for the latest row (computed
    when first asked, then kept until the next push) and :meth:`step` does both. The
    walk-forward backtest and the service decide through steppers only.

    Subclasses implement ``_push(row)`` (the row already checked) and ``_weights()``.

    Attributes
    ----------
    n_assets : int
    rows : int
        Price rows taken since the start.
    """

    n_assets: int
    rows: int = 0
    _w: np.ndarray | None = None

    def push(self, row: np.ndarray, *, check: bool = True) -> None:
        """Take the next price row, shape (n_assets,).

        Raises
        ------
        DataError
            Wrong length, a non-finite or non-positive price; nothing changes.
        """
        row = check_price_row(row, self.n_assets) if check else row
        self._push(row)
        self._w = None
        self.rows += 1

    def weights(self) -> np.ndarray:
        """Weights for the latest row, shape (n_assets,) (read-only; copy to keep)."""
        if self._w is None:
            self._w = self._weights()
            self._w.flags.writeable = False
        return self._w

    def step(self, row: np.ndarray, *, check: bool = True) -> np.ndarray:
        """:meth:`push` then :meth:`weights`."""
        self.push(row, check=check)
        return self.weights()

    def _push(self, row: np.ndarray) -> None:
        raise NotImplementedError

    def _weights(self) -> np.ndarray:
        raise NotImplementedError


def _start(history: np.ndarray, lookback: int) -> np.ndarray:
    """The last ``lookback`` rows of a price history, checked."""
    h = np.asarray(history, dtype=np.float64)
    if h.ndim != 2 or len(h) < lookback:
        raise DataError(f"a stepper starts from prices of shape (>= {lookback}, n_assets), "
                        f"got shape {h.shape}.")
    tail = h[-lookback:]
    if not (np.isfinite(tail).all() and (tail > 0).all()):
        raise DataError("the starting price history holds a non-finite or non-positive "
                        "price; fill or drop it first.")
    return tail


class WindowStepper(Stepper):
    """Any policy stepped by re-deciding from its trailing window at every row (no
    incremental state): the stepper of policies that have no faster one.

    Parameters
    ----------
    policy : Policy
    history : ndarray, shape (>= policy.lookback, n_assets)
    """

    def __init__(self, policy: Policy, history: np.ndarray) -> None:
        self.policy = policy
        self._ring = np.array(_start(history, policy.lookback))
        self.n_assets = self._ring.shape[1]
        self._head = 0

    def window(self) -> np.ndarray:
        """The trailing ``lookback`` price rows, oldest first (a copy)."""
        h = self._head
        return np.concatenate([self._ring[h:], self._ring[:h]]) if h else self._ring.copy()

    def _push(self, row: np.ndarray) -> None:
        self._ring[self._head] = row
        self._head = (self._head + 1) % len(self._ring)

    def _weights(self) -> np.ndarray:
        return np.asarray(self.policy.weights(self.window()), dtype=np.float64)


class _ConstantStepper(Stepper):
    """Weights that do not depend on prices (1/N, weights fixed at a fit)."""

    def __init__(self, weights: np.ndarray) -> None:
        self._fixed = np.asarray(weights, dtype=np.float64)
        self.n_assets = len(self._fixed)

    def _push(self, row: np.ndarray) -> None:
        pass

    def _weights(self) -> np.ndarray:
        return self._fixed.copy()


class _MomentsStepper(Stepper):
    """Rolling moments of the trailing returns and a rule on them."""

    def __init__(self, history: np.ndarray, window: int) -> None:
        tail = _start(history, window + 1)
        self.n_assets = tail.shape[1]
        self._last = tail[-1].copy()
        self.moments = RollingMoments(window).start(tail[1:] / tail[:-1] - 1.0)

    def _push(self, row: np.ndarray) -> None:
        r = row / self._last - 1.0
        self._last = np.array(row, dtype=np.float64)
        self.moments.push(r, check=False)


class _InverseVolatilityStepper(_MomentsStepper):
    def _weights(self) -> np.ndarray:
        return InverseVolatility._from_vol(np.sqrt(self.moments.variances(ddof=1)))


class _OptimizerStepper(_MomentsStepper):
    """The optimizer on the rolling covariance: a state update per row, a warm-started solve
    only when weights are asked for (a fallback that is rarely asked costs O(n^2) a row)."""

    def __init__(self, policy: OptimizerPolicy, history: np.ndarray) -> None:
        super().__init__(history, policy.window)
        self.cov_kind = policy.cov
        # Its own solver: a portfolio's warm starts never depend on another's decisions.
        self.solver = PortfolioSolver(policy.objective, self.n_assets, policy.constraints,
                                      **policy.options)

    def covariance(self) -> np.ndarray:
        """The window's covariance estimate, shape (n_assets, n_assets)."""
        if self.cov_kind == "ledoit_wolf":
            return self.moments.ledoit_wolf()[0]
        return self.moments.covariance(ddof=1)

    def _weights(self) -> np.ndarray:
        # min_variance reads the covariance only; the others read the window too
        returns = (None if self.solver.objective == "min_variance"
                   else self.moments.returns())
        return self.solver.solve(returns, self.covariance())


class FeatureNetworkStepper(Stepper):
    """A network stepped on incrementally updated inputs (:class:`FeatureStepper`).

    Parameters
    ----------
    spec : FeatureSpec
    forward : callable
        Raw inputs, shape (n_features,), to weights, shape (n_assets,).
    history : ndarray, shape (>= spec.lookback, n_assets)
    """

    def __init__(self, spec: Any, forward: Any, history: np.ndarray) -> None:
        self.inputs = FeatureStepper(spec).start(_start(history, spec.lookback))
        self.forward = forward
        self.n_assets = self.inputs.n_assets

    def _push(self, row: np.ndarray) -> None:
        self.inputs.push(row, check=False)

    def features(self) -> np.ndarray:
        """The raw inputs of the latest row, shape (n_features,)."""
        return self.inputs.features()

    def _weights(self) -> np.ndarray:
        return np.asarray(self.forward(self.inputs.features()), dtype=np.float64)


def stepper_for(policy: Any, history: np.ndarray) -> Stepper:
    """``policy.stepper(history)``, or a :class:`WindowStepper` for a policy without one."""
    make = getattr(policy, "stepper", None)
    return make(history) if make is not None else WindowStepper(policy, history)


def _until(labels: Any, last: pd.Timestamp) -> Any:
    """Labels (a DataFrame or a LabelSet) up to and including ``last``."""
    if hasattr(labels, "weights") and hasattr(labels, "params"):
        from dataclasses import replace

        return replace(labels, weights=labels.weights.loc[:last])
    return labels.loc[:last]


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
    carries_state = False

    def fit(self, prices: pd.DataFrame, labels: pd.DataFrame | None = None):
        return self

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        tail = _tail(prices, dates, self.lookback).to_numpy()
        offset = len(tail) - len(dates)
        rows = [self.weights(tail[: offset + i + 1]) for i in range(len(dates))]
        return pd.DataFrame(rows, index=dates, columns=prices.columns)

    def stepper(self, history: np.ndarray) -> Stepper:
        return WindowStepper(self, history)


def _window_returns(history: np.ndarray, lookback: int) -> np.ndarray:
    """Simple returns of the last ``lookback`` prices, shape (lookback - 1, n_assets)."""
    tail = np.asarray(history[-lookback:], dtype=np.float64)
    return tail[1:] / tail[:-1] - 1.0


class _Resolving(_Base):
    """A rule re-solved on the trailing window: at every update (``resolve="daily"``) or once
    per fit, its weights held until the next (``"at_fit"``). Subclasses give ``_solve``."""

    def _check_resolve(self, resolve: str) -> None:
        if resolve not in ("daily", "at_fit"):
            raise ConfigError(f"resolve must be 'daily' or 'at_fit', got {resolve!r}.")
        self.resolve = resolve

    def _solve(self, history: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, prices: pd.DataFrame, labels: pd.DataFrame | None = None):
        if self.resolve == "at_fit":
            self.weights_ = self._solve(prices.to_numpy())
        return self

    def weights(self, history: np.ndarray) -> np.ndarray:
        if self.resolve == "at_fit":
            return self.weights_.copy()
        return self._solve(history)

    def stepper(self, history: np.ndarray) -> Stepper:
        if self.resolve == "at_fit":
            _start(history, 1)
            return _ConstantStepper(self.weights_)
        return WindowStepper(self, history)

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        if self.resolve == "at_fit":
            return pd.DataFrame(np.tile(self.weights_, (len(dates), 1)), index=dates,
                                columns=prices.columns)
        return super().weights_batch(prices, dates)


class EqualWeight(_Base):
    """1/N: the same weight on every asset, whatever the market does."""

    def weights(self, history: np.ndarray) -> np.ndarray:
        n = np.asarray(history).shape[1]
        return np.full(n, 1.0 / n)

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        n = prices.shape[1]
        return pd.DataFrame(1.0 / n, index=dates, columns=prices.columns)

    def stepper(self, history: np.ndarray) -> Stepper:
        return _ConstantStepper(self.weights(_start(history, 1)))


class BuyAndHold(EqualWeight):
    """1/N bought on the first test date and never traded again: the weights drift with prices.

    The policy's targets are 1/N; its ``rebalance = "never"`` tells the simulator to trade
    only once.
    """

    rebalance = "never"


class InverseVolatility(_Base):
    """Weights proportional to 1 / volatility of each asset over the trailing window.

    Parameters
    ----------
    window : int
        Returns per volatility estimate.
    """

    def __init__(self, window: int = 126) -> None:
        if window < 2:
            raise ConfigError(f"InverseVolatility needs a window of >= 2 returns, got {window}.")
        self.window = window
        self.lookback = window + 1

    @staticmethod
    def _from_vol(vol: np.ndarray) -> np.ndarray:
        inv = 1.0 / np.maximum(vol, 1e-12)
        return inv / inv.sum(axis=-1, keepdims=True)

    def weights(self, history: np.ndarray) -> np.ndarray:
        return self._from_vol(_window_returns(history, self.lookback).std(axis=0, ddof=1))

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        returns = simple_returns(_tail(prices, dates, self.lookback)).to_numpy()
        windows = sliding_window_view(returns, self.window, axis=0)  # (dates, assets, window)
        return pd.DataFrame(self._from_vol(windows.std(axis=-1, ddof=1)), index=dates,
                            columns=prices.columns)

    def stepper(self, history: np.ndarray) -> Stepper:
        return _InverseVolatilityStepper(history, self.window)


class SkfolioPolicy(_Resolving):
    """Any skfolio portfolio estimator, fitted on the trailing window of returns.

    Parameters
    ----------
    estimator : skfolio BaseOptimization
        E.g. ``HierarchicalRiskParity()`` or ``MeanRisk(risk_measure=RiskMeasure.CVAR)``;
        cloned before each fit, so the instance passed in stays unfitted.
    window : int
        Returns per fit.
    resolve : {"daily", "at_fit"}
        Re-fit at every update, or once per re-training date (weights held in between).
    """

    def __init__(self, estimator: Any, window: int = 126, resolve: str = "daily") -> None:
        if not (hasattr(estimator, "fit") and hasattr(estimator, "get_params")):
            raise ConfigError(
                f"SkfolioPolicy takes a skfolio estimator (with fit and get_params), got "
                f"{type(estimator).__name__}.")
        self._check_resolve(resolve)
        self.estimator, self.window = estimator, window
        self.lookback = window + 1

    @classmethod
    def named(cls, name: str, window: int = 126, resolve: str = "daily") -> SkfolioPolicy:
        """The estimator class ``name`` of ``skfolio.optimization`` with default settings."""
        import skfolio.optimization as so

        est = getattr(so, name, None)
        if not isinstance(est, type) or not hasattr(est, "fit"):
            known = sorted(n for n in dir(so) if not n.startswith("_") and isinstance(
                getattr(so, n), type) and hasattr(getattr(so, n), "fit"))
            raise ConfigError(f"skfolio.optimization has no estimator {name!r}; choose one "
                              f"of {', '.join(known)}.")
        return cls(est(), window, resolve)

    def _solve(self, history: np.ndarray) -> np.ndarray:
        from sklearn.base import clone

        est = clone(self.estimator).fit(_window_returns(history, self.lookback))
        return np.asarray(est.weights_, dtype=np.float64)


class OptimizerPolicy(_Resolving):
    """An objective re-solved on the trailing window of returns.

    Parameters
    ----------
    objective : str
        A key of :data:`neuralfolio.optimize.OBJECTIVES`.
    window : int
        Returns per covariance window.
    resolve : {"daily", "at_fit"}
        ``daily`` re-solves at every update (the exact policy the network imitates);
        ``at_fit`` solves once per :meth:`fit` (re-training date) and holds those weights.
    cov : {"ledoit_wolf", "sample"}
        Windowed covariance estimator (EWMA carries state beyond the window, so it is
        offered for labels, not here yet).
    constraints : Constraints, optional
    risk_aversion, cvar_beta : float
        Parameters of ``mean_variance`` and ``min_cvar``.
    """

    def __init__(self, objective: str = "min_variance", window: int = 126,
                 resolve: str = "daily", *, cov: str = "ledoit_wolf",
                 constraints: Constraints | None = None, risk_aversion: float = 1.0,
                 cvar_beta: float = 0.95) -> None:
        self._check_resolve(resolve)
        if cov not in ("ledoit_wolf", "sample"):
            raise ConfigError(
                f"OptimizerPolicy takes a windowed covariance, 'ledoit_wolf' or 'sample'; "
                f"got {cov!r}."
            )
        if objective not in OBJECTIVES:
            raise ConfigError(
                f"Unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}."
            )
        self.objective, self.window, self.cov = objective, window, cov
        self.constraints = constraints or Constraints()
        self.options = {"risk_aversion": risk_aversion, "cvar_beta": cvar_beta}
        self.lookback = window + 1
        self._solver_: PortfolioSolver | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The OSQP solver neither pickles nor copies; a copy sets up its own.
        return {**self.__dict__, "_solver_": None}

    def fit(self, prices: pd.DataFrame, labels: pd.DataFrame | None = None):
        # A fresh solver: a warm start from the previous fit's last window would make this
        # fit's weights depend on the fits before it (carries_state is false).
        self._solver_ = None
        return super().fit(prices, labels)

    def _solver(self, n_assets: int) -> PortfolioSolver:
        if self._solver_ is None or self._solver_.n_assets != n_assets:
            self._solver_ = PortfolioSolver(self.objective, n_assets, self.constraints,
                                            **self.options)
        return self._solver_

    def _solve(self, history: np.ndarray) -> np.ndarray:
        returns = _window_returns(history, self.lookback)
        cov = ledoit_wolf(returns)[0] if self.cov == "ledoit_wolf" else sample_covariance(
            returns)
        return self._solver(returns.shape[1]).solve(returns, cov)

    def stepper(self, history: np.ndarray) -> Stepper:
        if self.resolve == "at_fit":
            return super().stepper(history)
        return _OptimizerStepper(self, history)

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        if self.resolve == "at_fit":
            return super().weights_batch(prices, dates)
        returns = simple_returns(_tail(prices, dates, self.lookback)).to_numpy()
        covs = rolling_covariances(returns, self.window, self.cov)
        solver = self._solver(prices.shape[1])
        windows = sliding_window_view(returns, self.window, axis=0)
        w = np.stack([solver.solve(win.T, c) for win, c in zip(windows, covs, strict=True)])
        return pd.DataFrame(w, index=dates, columns=prices.columns)


class MinVariancePolicy(OptimizerPolicy):
    """Minimum variance on a Ledoit-Wolf covariance of the trailing window (long-only
    unless ``constraints`` say otherwise).

    Parameters
    ----------
    window : int
    resolve : {"daily", "at_fit"}
        See :class:`OptimizerPolicy`.
    constraints : Constraints, optional
        Bounds, budget and short limit (a run uses its imitation network's mandate).
    """

    def __init__(self, window: int = 126, resolve: str = "daily", *,
                 constraints: Constraints | None = None) -> None:
        super().__init__("min_variance", window, resolve, constraints=constraints)


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
    refit_epochs : int, optional
        Most epochs of a fine-tuning fit (early stopping still applies); by default the
        allocator's ``max_epochs``.
    refit_recent : int, optional
        Fine-tune on the most recent ``refit_recent`` dates of data only (plus the
        lookback they need) instead of the whole history: the network already knows the
        older data, and the newest dates are what it has not seen.
    progress : bool
        Show the training progress bar.
    labels : LabelSet or DataFrame, optional
        Labels of its own, used instead of those the backtest passes (for a network whose
        head has another mandate than the run's labels); each fit reads them only up to
        the last date of the prices it is given.
    """

    def __init__(self, allocator: NeuralAllocator, *, fine_tune: bool = True,
                 refit_augment: int | None = None, refit_epochs: int | None = None,
                 refit_recent: int | None = None, progress: bool = False,
                 labels: Any = None) -> None:
        self.allocator = allocator
        self.labels = labels
        self.fine_tune = fine_tune
        self.refit_epochs = refit_epochs
        self.refit_recent = refit_recent
        self.refit_augment = (allocator.augment // 4 if refit_augment is None
                              else int(refit_augment))
        self.progress = progress
        self.lookback = allocator.features.lookback
        self.carries_state = fine_tune
        # Outcome-trained networks (e.g. loss "variance") learn from realized returns only.
        self.needs_labels = "target" in allocator.train.loss_fn().needs

    def fit(self, prices: pd.DataFrame, labels: pd.DataFrame | None = None) -> NeuralPolicy:
        if labels is None and self.needs_labels:
            raise ConfigError(
                f"NeuralPolicy.fit: the loss {self.allocator.train.loss!r} imitates label "
                "weights; pass labels, or use an outcome loss such as 'variance'.")
        if self.labels is not None and self.needs_labels:
            labels = _until(self.labels, prices.index[-1])
        refit = self.fine_tune and hasattr(self.allocator, "network_")
        if refit and self.refit_recent:
            prices = prices.iloc[-(self.refit_recent + self.lookback):]
        # The same fit in the main process, a process worker or a thread: fixed PyTorch
        # threads, and the seeded global generator to itself while it initializes and trains.
        self._forward_ = None  # the network changes: export it again when next stepped
        with fixed_threads(), exclusive_rng():
            self.allocator.fit(prices, labels if self.needs_labels else None,
                               warm_start=self.fine_tune,
                               augment=self.refit_augment if refit else None,
                               max_epochs=self.refit_epochs if refit else None,
                               progress=self.progress)
        return self

    def weights(self, history: np.ndarray) -> np.ndarray:
        with fixed_threads():
            return self.allocator.predict_latest(history)

    def _forward(self) -> Any:
        """Raw inputs -> weights of the fitted network: its NumPy runtime (the code the
        service runs) when it has one, else the PyTorch module."""
        fwd = getattr(self, "_forward_", None)
        if fwd is None:
            try:
                fwd = self.allocator.to_numpy_runtime().predict_features
            except ConfigError:  # no NumPy version (sequence networks, cash heads)
                alloc = self.allocator

                def fwd(raw: np.ndarray) -> np.ndarray:
                    with fixed_threads():
                        return alloc._forward(raw[None, :])[0]
            self._forward_ = fwd
        return fwd

    def stepper(self, history: np.ndarray) -> Stepper:
        self.allocator._require_fitted()
        return FeatureNetworkStepper(self.allocator.features, self._forward(), history)

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        with fixed_threads():
            # no extrapolation warnings here: the backtest measures what the network does
            return self.allocator.predict(_tail(prices, dates, self.lookback),
                                          guard=None).loc[dates]


class RuntimePolicy(_Base):
    """A frozen, exported model (:class:`~neuralfolio.scratch.runtime.NumpyAllocator`) as a
    policy: no re-training, no PyTorch; what a service runs between re-trainings.

    Parameters
    ----------
    runtime : NumpyAllocator
        From ``NeuralAllocator.to_numpy_runtime()`` or ``NumpyAllocator.load(path)``.
    """

    def __init__(self, runtime: Any) -> None:
        if not hasattr(runtime, "predict_latest") or not hasattr(runtime, "features"):
            raise ConfigError(f"RuntimePolicy takes a NumpyAllocator, got "
                              f"{type(runtime).__name__}.")
        self.runtime = runtime
        self.lookback = runtime.lookback

    def weights(self, history: np.ndarray) -> np.ndarray:
        return self.runtime.predict_latest(history)

    def stepper(self, history: np.ndarray) -> Stepper:
        h = np.asarray(history, dtype=np.float64)
        rt = self.runtime
        if h.ndim != 2 or (h.shape[1] != len(rt.assets) and not rt.asset_agnostic):
            raise DataError(f"the model allocates {len(rt.assets)} assets; a history of "
                            f"shape (dates, {len(rt.assets)}) is needed, got {h.shape}.")
        # late-bound: a runtime's forward replaced after the start (a fault injected in
        # a test, a patched model) is what the stepper runs
        return FeatureNetworkStepper(rt.features, lambda raw: rt.predict_features(raw), h)

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        from neuralfolio.features import make_features

        raw = make_features(_tail(prices, dates, self.lookback), self.runtime.features)
        return pd.DataFrame(self.runtime.predict_features(raw.loc[dates].to_numpy()),
                            index=dates, columns=prices.columns)
