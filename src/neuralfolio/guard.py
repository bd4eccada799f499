"""Guardrails as a policy wrapper: the checks the live service runs, composable around any
policy and stepped like one.

:class:`GuardedPolicy` wraps a policy (a network, a rule, an optimizer) and decides through
it, one price row at a time, with

* an **input check** (:class:`InputRange`): network inputs more than ``z_max`` training
  standard deviations from their training mean are out of distribution;
* an **output check** (:class:`OutputPromise`): finite weights that keep the head's promise
  (long-only summing to 1, or a long-short net exposure within a gross leverage);
* an optional **alert** (a callable answering a reason or None), e.g. the service's
  amortization-gap monitor;
* a **fallback**: another policy's stepper (usually the exact
  :class:`~neuralfolio.policies.OptimizerPolicy`), created from the held window the first
  time it is needed and stepped from then on, or the last weights that passed every check
  (always for a decision on a suspect row, e.g. a flagged price jump, since an optimizer
  would read the jump too).

The walk-forward backtest and the service run the same :class:`GuardedStepper`, so a
backtest of a guarded policy replays what the service answers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from neuralfolio.errors import ConfigError, NeuralfolioError
from neuralfolio.policies import Policy, Stepper, WindowStepper, _start, stepper_for

__all__ = ["GuardDecision", "GuardedPolicy", "GuardedStepper", "InputRange", "NoFallbackError",
           "OutputPromise"]


class NoFallbackError(NeuralfolioError):
    """A decision failed its checks and neither a fallback policy nor last good weights
    exist (the service answers 503)."""


@dataclass(frozen=True)
class InputRange:
    """Training range of a network's raw inputs.

    Parameters
    ----------
    mean, std : ndarray, shape (n_features,)
        Training mean and standard deviation of each input (std floored at 1e-12).
    z_max : float
        Inputs further than this many standard deviations are out of distribution.
    """

    mean: np.ndarray
    std: np.ndarray
    z_max: float

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        std = np.maximum(np.asarray(self.std, dtype=np.float64), 1e-12)
        if mean.shape != std.shape or mean.ndim != 1:
            raise ConfigError(f"InputRange mean and std must be vectors of one length, got "
                              f"shapes {mean.shape} and {std.shape}.")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "_band", self.z_max * std)

    def check(self, raw: np.ndarray) -> str | None:
        """None when ``raw`` (n_features,) is in range, else the reason. Inputs of another
        length (a model that reads other inputs) are not checked."""
        if len(raw) != len(self.mean):
            return None
        if (np.abs(raw - self.mean) <= self._band).all():  # False for NaN
            return None
        z = float(np.max(np.abs(raw - self.mean) / self.std))
        return (f"input outside the training distribution (max |z| = {z:.1f} > "
                f"{self.z_max:g})")


@dataclass(frozen=True)
class OutputPromise:
    """What a policy's weights promise, checked on every decision.

    Parameters
    ----------
    kind : {"long_only", "long_short"}
        ``long_only``: weights >= 0 summing to 1; ``long_short``: weights summing to ``net``
        with gross exposure ``sum |w|`` at most ``gross``.
    net : float
    gross : float, optional
        Required for ``long_short``.
    tol : float
        Tolerance of the sum and bounds.
    """

    kind: str = "long_only"
    net: float = 1.0
    gross: float | None = None
    tol: float = 1e-6

    def __post_init__(self) -> None:
        if self.kind not in ("long_only", "long_short"):
            raise ConfigError(f"OutputPromise kind must be 'long_only' or 'long_short', got "
                              f"{self.kind!r}.")
        if self.kind == "long_short" and not (self.gross is not None and self.gross > 0):
            raise ConfigError("a long_short OutputPromise needs gross > 0.")

    @classmethod
    def from_head(cls, head: dict[str, Any], tol: float = 1e-6) -> OutputPromise:
        """The promise of an exported allocation head (``NumpyAllocator.head``)."""
        if head.get("name") == "long_short":
            return cls("long_short", float(head.get("net", 1.0)),
                       float(head["gross_leverage"]), tol)
        return cls("long_only", 1.0, None, tol)

    def check(self, w: np.ndarray) -> str | None:
        """None when ``w`` (n_assets,) keeps the promise, else the reason."""
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 1 or not np.isfinite(w).all():
            return "output check failed (non-finite weights)"
        tol, s = self.tol, float(w.sum())
        if self.kind == "long_short":
            gross = float(np.abs(w).sum())
            if not (math.isfinite(s) and math.isfinite(gross)):
                return "output check failed (non-finite weights)"
            if abs(s - self.net) > tol or gross > self.gross + tol:
                return (f"output check failed (sum {s:.6f}, gross {gross:.4f}; promised sum "
                        f"{self.net:g}, gross <= {self.gross:g})")
            return None
        low = float(w.min())
        if not (math.isfinite(s) and math.isfinite(low)):
            return "output check failed (non-finite weights)"
        if low < -tol or abs(s - 1.0) > tol:
            return (f"output check failed (min weight {low:.2e}, sum {s:.8f}; promised "
                    "long-only, summing to 1)")
        return None


@dataclass
class GuardDecision:
    """One guarded decision.

    Attributes
    ----------
    weights : ndarray, shape (n_assets,)
    source : {"policy", "fallback", "last_good"}
        What produced the weights.
    reason : str or None
        Why the policy's own weights were not used.
    stages : dict of str to float
        Seconds spent per stage: ``features``, ``forward``, ``checks`` and, when used,
        ``fallback``.
    policy_weights : ndarray or None
        The policy's own weights when it was asked and they kept its promise, even when
        the alert set them aside (so that a monitor can see whether the policy came back).
    """

    weights: np.ndarray
    source: str
    reason: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    policy_weights: np.ndarray | None = None

    @property
    def fallback(self) -> bool:
        """Whether the weights are not the policy's own."""
        return self.source != "policy"


class GuardedStepper(Stepper):
    """The running state of a :class:`GuardedPolicy` (see its docstring).

    :meth:`decide` answers a :class:`GuardDecision` for the latest row; :meth:`weights` its
    weights. ``decide(suspect=reason)`` treats the latest row as suspect: the policy is not
    asked, and the answer is the last good weights (or the fallback's when there are none).
    """

    def __init__(self, guard: GuardedPolicy, history: np.ndarray) -> None:
        tail = _start(history, guard.lookback)
        self.guard = guard
        self.inner = stepper_for(guard.policy, tail)
        self.n_assets = tail.shape[1]
        self.last_good: np.ndarray | None = None
        self.alert = guard.alert  # per stepper: e.g. one portfolio's gap alert
        self._fallback: Stepper | None = None
        fb = guard.fallback
        # The fallback's window, kept so that its stepper can start when first needed.
        self._window = WindowStepper(_Null(fb.lookback), tail) if fb is not None else None
        self._decision: GuardDecision | None = None

    def _push(self, row: np.ndarray) -> None:
        self.inner.push(row, check=False)
        if self._fallback is not None:
            self._fallback.push(row, check=False)
        elif self._window is not None:
            self._window.push(row, check=False)
        self._decision = None

    def fallback_stepper(self) -> Stepper | None:
        """The fallback policy's stepper (started from the held window when first asked)."""
        if self._fallback is None and self.guard.fallback is not None:
            self._fallback = stepper_for(self.guard.fallback, self._window.window())
            self._window = None
        return self._fallback

    def decide(self, suspect: str | None = None) -> GuardDecision:
        """The guarded decision for the latest row.

        Parameters
        ----------
        suspect : str, optional
            A reason to distrust the latest row (e.g. a flagged price jump).

        Raises
        ------
        NoFallbackError
            The checks failed, and there is neither a fallback nor last good weights.
        """
        if suspect is None and self._decision is not None:
            return self._decision
        g, stages = self.guard, {}
        clock = time.perf_counter
        reason, w, kept = suspect, None, None
        if reason is None:
            try:
                t0 = clock()
                if g.inputs is not None and hasattr(self.inner, "features"):
                    raw = self.inner.features()
                    t1 = clock()
                    stages["features"] = t1 - t0
                    reason = g.inputs.check(raw)
                    t0 = clock()
                    stages["checks"] = t0 - t1
                if reason is None:
                    w = self.inner.weights()
                    t1 = clock()
                    stages["forward"] = t1 - t0
                    reason = g.promise.check(w) if g.promise is not None else None
                    if reason is None and self.alert is not None:
                        kept = w
                        reason = self.alert()
                    stages["checks"] = stages.get("checks", 0.0) + clock() - t1
            except Exception as exc:  # a policy that fails is a failed check, not an outage
                reason = f"policy failed ({type(exc).__name__}: {exc})"
        if reason is None:
            self.last_good = w
            decision = GuardDecision(w, "policy", None, stages)
        else:
            decision = self._fall_back(reason, suspect is not None, stages)
            decision.policy_weights = kept
        if suspect is None:
            self._decision = decision
        return decision

    def _fall_back(self, reason: str, suspect: bool, stages: dict[str, float]) -> GuardDecision:
        if suspect and self.last_good is not None:
            return GuardDecision(self.last_good, "last_good", reason, stages)
        t0 = time.perf_counter()
        try:
            fb = self.fallback_stepper()
            w = None if fb is None else np.asarray(fb.weights(), dtype=np.float64)
            if w is not None and (w.shape != (self.n_assets,) or not np.isfinite(w).all()):
                raise ValueError(f"its weights are not {self.n_assets} finite numbers")
        except Exception as exc:  # e.g. a solver failure: the last good weights, if any
            w = None  # its state (pushed rows) stays valid: it is asked again next row
            reason = f"{reason}; the fallback failed too ({type(exc).__name__}: {exc})"
        if w is not None:
            stages["fallback"] = time.perf_counter() - t0
            return GuardDecision(w, "fallback", reason, stages)
        if self.last_good is not None:
            return GuardDecision(self.last_good, "last_good", reason, stages)
        raise NoFallbackError(
            f"{reason}; no earlier weights passed the checks to answer with instead"
            if self.guard.fallback is not None else
            f"{reason}, and there is no fallback: no fallback policy and no earlier weights "
            "that passed the checks.")

    def _weights(self) -> np.ndarray:
        return np.array(self.decide().weights, dtype=np.float64)


class _Null:
    """A stand-in policy that only has a lookback (for the fallback's window)."""

    def __init__(self, lookback: int) -> None:
        self.lookback = lookback


class GuardedPolicy:
    """A policy with guardrails: input and output checks, an alert hook and a fallback.

    Parameters
    ----------
    policy : Policy
        The policy to guard.
    fallback : Policy, optional
        What answers when a check fails (usually the exact
        :class:`~neuralfolio.policies.OptimizerPolicy` the network imitates); without one,
        the last weights that passed the checks.
    inputs : InputRange, optional
        Training range of the policy's raw inputs (checked when its stepper exposes
        ``features()``, as network steppers do).
    promise : OutputPromise, optional
        What the weights promise; default long-only summing to 1. None: not checked.
    alert : callable, optional
        Called at each decision; a non-None answer (the reason) sends the decision to the
        fallback (e.g. ``lambda: "amortization gap above its threshold" if ... else None``).

    Notes
    -----
    :meth:`fit` fits both the policy and the fallback. ``weights(history)`` is the guarded
    decision from scratch: a fresh stepper's first decision.
    """

    def __init__(self, policy: Policy, *, fallback: Policy | None = None,
                 inputs: InputRange | None = None,
                 promise: OutputPromise | None = OutputPromise(),
                 alert: Callable[[], str | None] | None = None) -> None:
        for name, p in (("policy", policy), ("fallback", fallback)):
            if p is not None and not (hasattr(p, "weights") and hasattr(p, "lookback")):
                raise ConfigError(f"GuardedPolicy {name} must be a policy (with weights and "
                                  f"lookback), got {type(p).__name__}.")
        self.policy, self.fallback = policy, fallback
        self.inputs, self.promise, self.alert = inputs, promise, alert
        self.lookback = max(policy.lookback, fallback.lookback if fallback else 1)
        self.needs_labels = bool(policy.needs_labels or getattr(fallback, "needs_labels",
                                                                False))
        self.carries_state = bool(getattr(policy, "carries_state", True)
                                  or getattr(fallback, "carries_state", False))
        rebalance = getattr(policy, "rebalance", None)
        if rebalance is not None:
            self.rebalance = rebalance

    def fit(self, prices: pd.DataFrame, labels: pd.DataFrame | None = None) -> GuardedPolicy:
        self.policy.fit(prices, labels if self.policy.needs_labels else None)
        if self.fallback is not None:
            self.fallback.fit(prices, labels if self.fallback.needs_labels else None)
        return self

    def stepper(self, history: np.ndarray) -> GuardedStepper:
        """A :class:`GuardedStepper` started from prices (>= lookback, n_assets)."""
        return GuardedStepper(self, history)

    def decide(self, history: np.ndarray, suspect: str | None = None) -> GuardDecision:
        """The guarded decision from scratch for the last row of ``history``."""
        return self.stepper(history).decide(suspect)

    def weights(self, history: np.ndarray) -> np.ndarray:
        return np.array(self.decide(history).weights, dtype=np.float64)

    def weights_batch(self, prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
        """Guarded weights stepped through ``dates`` (the last good weights carry over from
        one date to the next, as in the service)."""
        values = prices.to_numpy(dtype=np.float64)
        first = int(prices.index.get_loc(dates[0]))
        if first + 1 < self.lookback:
            raise ConfigError(f"Weights on {dates[0].date()} need {self.lookback} price rows, "
                              f"only {first + 1} exist.")
        positions = prices.index.get_indexer(dates)
        stepper = self.stepper(values[first + 1 - self.lookback: first + 1])
        rows, at = [], first
        for pos in positions:
            while at < pos:
                at += 1
                stepper.push(values[at], check=False)
            rows.append(np.array(stepper.weights()))
        return pd.DataFrame(rows, index=dates, columns=prices.columns)
