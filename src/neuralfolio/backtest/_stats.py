"""Statistics a skeptic asks for: tail and active risk, paired bootstrap intervals, PSR/DSR.

All inputs are daily simple returns (0.01 for 1%), oldest first, one value per decision date.
Annualization uses :data:`neuralfolio.risk.TRADING_DAYS` (252).

Paired comparisons resample *days*, the same days for both policies, in blocks of
consecutive days (a circular moving-block bootstrap), so that the interval for a difference
keeps both the correlation between the two policies and the serial dependence of volatility.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from neuralfolio import risk
from neuralfolio.errors import ConfigError, DataError
from neuralfolio.risk import TRADING_DAYS

__all__ = [
    "PAIRED_STATISTICS",
    "STATISTICS",
    "PairedInterval",
    "deflated_sharpe_ratio",
    "paired_bootstrap",
    "return_statistics",
]

STATISTICS: dict[str, str] = {
    "annual_return": "Annualized geometric return",
    "volatility": "Annualized volatility of daily returns",
    "sharpe": "Annualized Sharpe ratio (risk-free rate 0)",
    "sortino": "Annualized Sortino ratio (target 0)",
    "max_drawdown": "Largest peak-to-trough loss of wealth",
    "calmar": "Annualized return over maximum drawdown",
    "var_95": "Historical 1-day value at risk at 95%, a loss as a positive number",
    "cvar_95": "Historical 1-day conditional value at risk at 95%, a positive loss",
    "worst_day": "Lowest daily return",
    "psr": "Probabilistic Sharpe ratio: probability that the true Sharpe ratio exceeds 0",
    "tracking_error": "Annualized deviation of the return above the benchmark",
    "information_ratio": "Annualized mean return above the benchmark over the tracking error",
}
"""Figures of :func:`return_statistics`, with their definitions."""


def _series(returns, name: str) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise DataError(f"{name} must be one series of daily returns, got shape {r.shape}.")
    if len(r) < 2:
        raise DataError(f"{name} has {len(r)} returns; statistics need at least 2.")
    bad = np.flatnonzero(~np.isfinite(r))
    if len(bad):
        raise DataError(
            f"{name} has {len(bad)} missing or infinite returns (first at position {bad[0]}); "
            "drop or fill them before computing statistics."
        )
    return r


def return_statistics(returns, benchmark=None) -> dict[str, float]:
    """Return, risk, tail and (with a benchmark) active-risk figures of one return series.

    Parameters
    ----------
    returns : array-like, shape (n_days,)
        Daily simple returns of the policy.
    benchmark : array-like, shape (n_days,), optional
        Daily returns of the benchmark on the same days, for ``tracking_error`` and
        ``information_ratio`` (NaN without one).

    Returns
    -------
    dict
        The keys of :data:`STATISTICS`.
    """
    from skfolio.measures import probabilistic_sharpe_ratio

    r = _series(returns, "returns")
    annual = risk.annualized_return(r)
    dd = risk.max_drawdown(r)
    out = {
        "annual_return": annual,
        "volatility": risk.annualized_volatility(r),
        "sharpe": risk.sharpe_ratio(r),
        "sortino": risk.sortino_ratio(r),
        "max_drawdown": dd,
        "calmar": annual / dd if dd > 0 else math.nan,
        "var_95": risk.value_at_risk(r, 0.95),
        "cvar_95": risk.conditional_value_at_risk(r, 0.95),
        "worst_day": float(r.min()),
        "psr": float(probabilistic_sharpe_ratio(r)) if r.std() > 0 else math.nan,
        "tracking_error": math.nan,
        "information_ratio": math.nan,
    }
    if benchmark is not None:
        b = _series(benchmark, "benchmark")
        if len(b) != len(r):
            raise DataError(
                f"returns has {len(r)} days but benchmark has {len(b)}; give both on the "
                "same dates."
            )
        active = r - b
        te = float(active.std(ddof=1) * math.sqrt(TRADING_DAYS))
        out["tracking_error"] = te
        out["information_ratio"] = (float(active.mean() * TRADING_DAYS / te) if te > 0
                                    else math.nan)
    return out


def _volatility(r: np.ndarray) -> np.ndarray:
    return r.std(axis=-1, ddof=1) * math.sqrt(TRADING_DAYS)


def _sharpe(r: np.ndarray) -> np.ndarray:
    sd = r.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, r.mean(axis=-1) / sd, np.nan) * math.sqrt(TRADING_DAYS)


def _mean(r: np.ndarray) -> np.ndarray:
    return r.mean(axis=-1) * TRADING_DAYS


PAIRED_STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "volatility": _volatility,
    "sharpe": _sharpe,
    "mean": _mean,
}
"""Statistics :func:`paired_bootstrap` compares, each along the last axis (annualized:
volatility, Sharpe ratio, arithmetic mean return)."""


@dataclass(frozen=True)
class PairedInterval:
    """A difference ``statistic(a) - statistic(b)`` with its bootstrap confidence interval.

    Attributes
    ----------
    statistic : str
    estimate : float
        The difference on the observed days.
    low, high : float
        Percentile interval of the bootstrapped differences.
    confidence : float
    n_boot, block : int
        Resamples and block length (days).
    """

    statistic: str
    estimate: float
    low: float
    high: float
    confidence: float
    n_boot: int
    block: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of zero."""
        return self.low > 0 or self.high < 0


def paired_bootstrap(a, b, statistic: str = "volatility", *, n_boot: int = 2000,
                     block: int = 21, confidence: float = 0.95,
                     seed: int | None = 0) -> PairedInterval:
    """Confidence interval for the difference of a statistic between two policies.

    Parameters
    ----------
    a, b : array-like, shape (n_days,)
        Daily returns of the two policies on the same days.
    statistic : {"volatility", "sharpe", "mean"}
    n_boot : int
        Bootstrap resamples.
    block : int
        Days per block (21: about a month of volatility clustering kept together).
    confidence : float
        In (0, 1).
    seed : int, optional

    Returns
    -------
    PairedInterval
    """
    if statistic not in PAIRED_STATISTICS:
        raise ConfigError(
            f"Unknown statistic {statistic!r}; choose one of {', '.join(PAIRED_STATISTICS)}."
        )
    x, y = _series(a, "a"), _series(b, "b")
    if len(x) != len(y):
        raise DataError(f"a has {len(x)} days but b has {len(y)}; pair them on the same dates.")
    n = len(x)
    if not 1 <= block <= n:
        raise ConfigError(f"block must be between 1 and the {n} days, got {block}.")
    if n_boot < 100:
        raise ConfigError(f"n_boot must be >= 100 for a percentile interval, got {n_boot}.")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}.")
    fn = PAIRED_STATISTICS[statistic]
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // block)
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    idx = ((starts[:, :, None] + np.arange(block)) % n).reshape(n_boot, -1)[:, :n]
    diffs = fn(x[idx]) - fn(y[idx])
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(diffs, [tail, 1.0 - tail])
    return PairedInterval(statistic, float(fn(x) - fn(y)), float(low), float(high),
                          float(confidence), int(n_boot), int(block))


def deflated_sharpe_ratio(returns, trial_sharpe_ratios) -> float:
    """Probability that the selected configuration's true Sharpe ratio exceeds zero, given
    how many configurations were tried (skfolio's deflated Sharpe ratio).

    Parameters
    ----------
    returns : array-like, shape (n_days,)
        Daily returns of the configuration that was selected.
    trial_sharpe_ratios : array-like, shape (n_trials,)
        Daily (not annualized) Sharpe ratios of every configuration tried, the selected one
        included.

    Returns
    -------
    float
        In [0, 1]; 0.95 or more is the usual bar.
    """
    from skfolio.measures import deflated_sharpe_ratio as dsr

    r = _series(returns, "returns")
    trials = np.asarray(trial_sharpe_ratios, dtype=np.float64)
    if trials.ndim != 1 or len(trials) < 2 or not np.isfinite(trials).all():
        raise DataError(
            "trial_sharpe_ratios must be the finite daily Sharpe ratios of at least two "
            f"configurations, got {trials!r}."
        )
    return float(dsr(r, trials))
