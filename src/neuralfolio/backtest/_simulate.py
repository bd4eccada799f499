"""Trading simulator: target weights in, a wealth path with drift, costs and cash out.

A policy decides target weights at the close of each date from the past only. The
simulator holds positions between rebalances (they drift with prices), trades to the target
on the dates the rebalancing rule picks, charges costs once per trade on the amount traded,
and pays interest on cash.

Conventions (each checked number by number in ``tests/backtest/test_simulate.py``):

* State at a close: asset positions ``v`` (currency, negative for shorts) and cash ``c``;
  wealth ``W = sum(v) + c``. The run starts in cash (``W = initial_wealth``).
* A rebalance at date t trades each position to ``W_t * target_t`` exactly; the traded amount
  is ``sum |W_t * target_t - v_t|`` (the first trade, out of cash, included); the cost
  ``cost_bps / 1e4 * traded + fixed_cost * orders`` (``orders``: assets whose position
  changed) is paid from cash, so cash becomes ``W_t * (1 - sum target_t) - cost``.
* Over the next day, positions grow by the assets' returns ``r_(t+1)`` and cash by the daily
  rate ``(1 + cash_rate) ** (1 / periods_per_year) - 1`` (negative cash pays the same rate).
* The return of date t is ``W_(t+1) / W_t - 1``: net of the cost of the trade at t.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from neuralfolio.errors import ConfigError, DataError

__all__ = ["REBALANCE_RULES", "Execution", "Simulation", "rebalance_dates", "simulate"]

REBALANCE_RULES: dict[str, str] = {
    "daily": "Trade to the target at every decision date",
    "weekly": "Trade at the first decision date of each calendar week",
    "monthly": "Trade at the first decision date of each calendar month",
    "quarterly": "Trade at the first decision date of each calendar quarter",
    "threshold": "Trade when the drifted weights are more than `threshold` (sum of absolute "
                 "differences) away from the target",
    "never": "Trade once, at the first date, then hold (buy-and-hold)",
}
"""Rebalancing rules of :class:`Execution`; the first decision date always trades."""

_PERIOD = {"weekly": "W", "monthly": "M", "quarterly": "Q"}


@dataclass(frozen=True)
class Execution:
    """How target weights become trades.

    Parameters
    ----------
    rebalance : str
        A key of :data:`REBALANCE_RULES`.
    threshold : float
        Drift that triggers a trade under ``rebalance="threshold"``: the sum over assets
        of ``|drifted weight - target weight|``.
    cost_bps : float
        Proportional cost, basis points of the amount traded (buys and sells).
    fixed_cost : float
        Cost per order (per asset whose position a rebalance changes), in the currency of
        ``initial_wealth``.
    cash_rate : float
        Annual rate earned by cash (``1 - sum of weights``) and paid on negative cash.
    initial_wealth : float
    periods_per_year : int
        Decision dates per year (daily data: 252).
    """

    rebalance: str = "daily"
    threshold: float = 0.05
    cost_bps: float = 0.0
    fixed_cost: float = 0.0
    cash_rate: float = 0.0
    initial_wealth: float = 1.0
    periods_per_year: int = 252

    def __post_init__(self) -> None:
        if self.rebalance not in REBALANCE_RULES:
            raise ConfigError(f"Unknown rebalance rule {self.rebalance!r}; choose one of "
                              f"{', '.join(REBALANCE_RULES)}.")
        for name in ("threshold", "cost_bps", "fixed_cost"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}.")
        if not np.isfinite(self.cash_rate) or self.cash_rate <= -1:
            raise ConfigError(f"cash_rate is an annual rate > -1 (0.02 for 2%), got "
                              f"{self.cash_rate}.")
        if not np.isfinite(self.initial_wealth) or self.initial_wealth <= 0:
            raise ConfigError(f"initial_wealth must be > 0, got {self.initial_wealth}.")
        if self.periods_per_year < 1:
            raise ConfigError(f"periods_per_year must be >= 1, got {self.periods_per_year}.")

    def with_rebalance(self, rebalance: str | None) -> Execution:
        """The same costs and cash under another rebalancing rule (None: unchanged)."""
        if rebalance is None or rebalance == self.rebalance:
            return self
        return Execution(**{**asdict(self), "rebalance": rebalance})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Simulation:
    """The path of one policy through :func:`simulate`; every series is indexed by decision
    date t (its return is realized over the next day).

    Attributes
    ----------
    returns : Series
        Net returns ``W_(t+1) / W_t - 1``.
    gross_returns : Series
        The same returns before the cost paid at t.
    wealth : Series
        ``W_(t+1)``, wealth at the next close.
    costs : Series
        Cost paid at t, in currency.
    traded : Series
        Amount traded at t as a fraction of ``W_t``.
    rebalanced : Series of bool
    held : DataFrame, shape (n_dates, n_assets)
        Weights held over the next day, positions over post-trade wealth ``W_t - cost``.
    """

    returns: pd.Series
    gross_returns: pd.Series
    wealth: pd.Series
    costs: pd.Series
    traded: pd.Series
    rebalanced: pd.Series
    held: pd.DataFrame

    def turnover(self) -> float:
        """Average traded fraction per date, the first trade (out of cash) excluded."""
        t = self.traded.to_numpy()[1:]
        return float(t.mean()) if len(t) else 0.0

    def annual_cost(self, periods_per_year: int = 252) -> float:
        """Average yearly drag of costs on return: mean of cost / W_t times periods."""
        return float((self.gross_returns - self.returns).mean() * periods_per_year)


def rebalance_dates(dates: pd.DatetimeIndex, rule: str) -> np.ndarray:
    """Which decision dates a calendar rule trades on, shape (n_dates,) of bool.

    ``threshold`` depends on the path and is decided inside :func:`simulate`; here it (and
    ``never``) marks only the first date.
    """
    if rule not in REBALANCE_RULES:
        raise ConfigError(f"Unknown rebalance rule {rule!r}; choose one of "
                          f"{', '.join(REBALANCE_RULES)}.")
    n = len(dates)
    if rule == "daily":
        return np.ones(n, dtype=bool)
    out = np.zeros(n, dtype=bool)
    if n == 0:
        return out
    if rule in _PERIOD:
        period = dates.to_period(_PERIOD[rule]).asi8
        out[1:] = period[1:] != period[:-1]
    out[0] = True
    return out


def simulate(targets: pd.DataFrame, next_returns: pd.DataFrame,
             execution: Execution | None = None) -> Simulation:
    """Trade ``targets`` through ``next_returns`` under ``execution``'s rules.

    Parameters
    ----------
    targets : DataFrame, shape (n_dates, n_assets)
        Weights decided at the close of each date (fractions of wealth; ``1 - sum`` is cash).
    next_returns : DataFrame, shape (n_dates, n_assets)
        Simple returns realized over the day after each date, same index and columns.
    execution : Execution, optional
        Default: daily rebalancing, no costs, no interest.

    Returns
    -------
    Simulation
    """
    ex = execution or Execution()
    if not targets.index.equals(next_returns.index) or not targets.columns.equals(
            next_returns.columns):
        raise DataError("targets and next_returns must share dates and assets; build both "
                        "from the same walk-forward run.")
    w = targets.to_numpy(dtype=np.float64)
    r = next_returns.to_numpy(dtype=np.float64)
    for name, a in (("targets", w), ("next_returns", r)):
        if not np.isfinite(a).all():
            row = int(np.argwhere(~np.isfinite(a))[0, 0])
            raise DataError(f"{name} has a missing or infinite value on "
                            f"{targets.index[row].date()}; a policy must decide every date.")
    n, m = w.shape
    scheduled = rebalance_dates(targets.index, ex.rebalance)
    rate = (1.0 + ex.cash_rate) ** (1.0 / ex.periods_per_year) - 1.0
    k = ex.cost_bps / 1e4

    v = np.zeros(m)
    c = float(ex.initial_wealth)
    out_ret, gross, wealth, costs, traded = (np.empty(n) for _ in range(5))
    rebalanced = np.zeros(n, dtype=bool)
    held = np.empty((n, m))
    for t in range(n):
        W = v.sum() + c
        if W <= 0:
            raise DataError(f"Wealth reached {W:.4g} on {targets.index[t].date()}: the "
                            "portfolio is bankrupt; check the leverage of the targets.")
        trade = scheduled[t] or (ex.rebalance == "threshold"
                                 and np.abs(v / W - w[t]).sum() > ex.threshold)
        cost = 0.0
        if trade:
            new = W * w[t]
            delta = np.abs(new - v)
            cost = k * delta.sum() + ex.fixed_cost * int((delta > 1e-12 * W).sum())
            traded[t] = delta.sum() / W
            c = W * (1.0 - w[t].sum()) - cost
            v = new
            rebalanced[t] = True
        else:
            traded[t] = 0.0
        costs[t] = cost
        held[t] = v / (W - cost)
        v = v * (1.0 + r[t])
        c = c * (1.0 + rate)
        after = v.sum() + c
        wealth[t] = after
        out_ret[t] = after / W - 1.0
        gross[t] = (after + cost * (1.0 + rate)) / W - 1.0
    idx = targets.index
    return Simulation(
        returns=pd.Series(out_ret, idx), gross_returns=pd.Series(gross, idx),
        wealth=pd.Series(wealth, idx), costs=pd.Series(costs, idx),
        traded=pd.Series(traded, idx), rebalanced=pd.Series(rebalanced, idx),
        held=pd.DataFrame(held, idx, targets.columns),
    )
