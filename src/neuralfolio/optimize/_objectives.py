"""Portfolio objectives on one window of returns, with a shared set of constraints.

Minimum variance and mean-variance go through the warm-started OSQP fast path; maximum
Sharpe, minimum CVaR, risk parity and maximum diversification go through skfolio, fed the
same covariance estimate so every objective sees the same risk model.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neuralfolio.errors import ConfigError, SolverError
from neuralfolio.optimize._minvar import MeanVarianceQP, MinVarianceQP

__all__ = ["FAST_OBJECTIVES", "OBJECTIVES", "Constraints", "PortfolioSolver"]

OBJECTIVES: dict[str, str] = {
    "min_variance": "minimum variance (OSQP fast path)",
    "mean_variance": "maximum mean - risk_aversion * variance (OSQP fast path)",
    "max_sharpe": "maximum Sharpe ratio (skfolio); minimum variance when no asset has a "
                  "positive expected return in the window",
    "min_cvar": "minimum CVaR of the window's returns at cvar_beta (skfolio)",
    "risk_parity": "equal risk contributions to variance (skfolio; long-only)",
    "max_diversification": "maximum diversification ratio (skfolio)",
}
"""Objectives the label generator and the optimizer policy solve."""

FAST_OBJECTIVES: tuple[str, ...] = ("min_variance", "mean_variance")


@dataclass(frozen=True)
class Constraints:
    """Weight constraints shared by every objective.

    Parameters
    ----------
    lower, upper : float or tuple of float
        Per-asset bounds (one number for all, or one per asset). ``lower=0`` is long-only;
        a negative ``lower`` allows bounded shorts.
    budget : float
        Sum of the weights.
    max_short : float, optional
        Cap on the total short exposure ``sum(max(-w, 0))``; with the budget fixed,
        ``budget + 2 * max_short`` caps the gross leverage ``sum |w|``. Every objective but
        ``risk_parity`` (long-only) applies it.
    """

    lower: float | tuple[float, ...] = 0.0
    upper: float | tuple[float, ...] = 1.0
    budget: float = 1.0
    max_short: float | None = None

    def __post_init__(self) -> None:
        for name in ("lower", "upper"):
            value = getattr(self, name)
            if np.ndim(value) != 0:
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.max_short is not None and self.max_short < 0:
            raise ConfigError(f"max_short must be >= 0, got {self.max_short}.")

    @property
    def long_only(self) -> bool:
        return bool(np.min(self.lower) >= 0)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@functools.cache
def _given_covariance_class():
    # Built on first use: importing skfolio costs about a second.
    from skfolio.moments import BaseCovariance

    class GivenCovariance(BaseCovariance):
        """A skfolio covariance estimator that returns a covariance computed here."""

        def __init__(self, covariance=None, nearest=True):
            super().__init__(nearest=nearest)
            self.covariance = covariance

        def fit(self, X, y=None):
            self._set_covariance(np.asarray(self.covariance))
            return self

    return GivenCovariance


class _GivenCovariance:
    @staticmethod
    def make(covariance: np.ndarray):
        """A fitted-on-demand skfolio estimator for ``covariance``, shape (n, n)."""
        return _given_covariance_class()(covariance)


class PortfolioSolver:
    """Solve one objective window after window.

    Parameters
    ----------
    objective : str
        A key of :data:`OBJECTIVES`.
    n_assets : int
    constraints : Constraints, optional
    risk_aversion : float
        Mean-variance utility ``mu'w - risk_aversion * w'Sw``.
    cvar_beta : float
        Confidence of the CVaR objective.

    Attributes
    ----------
    n_fallbacks_ : int
        Windows where ``max_sharpe`` had no asset with a positive expected return and the
        minimum-variance solution was used instead.
    """

    def __init__(self, objective: str, n_assets: int, constraints: Constraints | None = None,
                 *, risk_aversion: float = 1.0, cvar_beta: float = 0.95) -> None:
        if objective not in OBJECTIVES:
            raise ConfigError(
                f"Unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}."
            )
        self.objective = objective
        self.n_assets = n_assets
        self.constraints = constraints or Constraints()
        self.risk_aversion = risk_aversion
        self.cvar_beta = cvar_beta
        c = self.constraints
        if objective == "risk_parity" and not c.long_only:
            raise ConfigError("risk_parity is long-only: set lower >= 0.")
        box = {"lower": np.asarray(c.lower, float), "upper": np.asarray(c.upper, float),
               "budget": c.budget, "max_short": c.max_short}
        self._minvar = MinVarianceQP(n_assets, **box)
        self._meanvar = (MeanVarianceQP(n_assets, risk_aversion=risk_aversion, **box)
                         if objective == "mean_variance" else None)
        self.n_fallbacks_ = 0

    def solve(self, returns: np.ndarray, covariance: np.ndarray) -> np.ndarray:
        """Weights for one window.

        Parameters
        ----------
        returns : ndarray, shape (n_obs, n_assets)
            The window's daily returns (expected returns are their mean; CVaR uses them
            as scenarios).
        covariance : ndarray, shape (n_assets, n_assets)
            The covariance estimate of the window.

        Returns
        -------
        ndarray, shape (n_assets,)
        """
        if self.objective == "min_variance":
            return self._minvar.solve(covariance)
        mu = np.asarray(returns, dtype=np.float64).mean(axis=0)
        if self.objective == "mean_variance":
            return self._meanvar.solve(covariance, mu)
        if self.objective == "max_sharpe" and mu.max() <= 0:
            self.n_fallbacks_ += 1
            return self._minvar.solve(covariance)
        return self._skfolio(returns, covariance)

    def _skfolio(self, returns: np.ndarray, covariance: np.ndarray) -> np.ndarray:
        from skfolio import RiskMeasure
        from skfolio.optimization import (
            MaximumDiversification,
            MeanRisk,
            ObjectiveFunction,
            RiskBudgeting,
        )
        from skfolio.prior import EmpiricalPrior

        c = self.constraints
        prior = EmpiricalPrior(covariance_estimator=_GivenCovariance.make(covariance))
        bounds = {"min_weights": np.asarray(c.lower, float) if np.ndim(c.lower) else c.lower,
                  "max_weights": np.asarray(c.upper, float) if np.ndim(c.upper) else c.upper}
        common = {**bounds, "prior_estimator": prior}
        shorts = {"budget": c.budget, "max_short": c.max_short}
        if self.objective == "max_sharpe":
            model = MeanRisk(objective_function=ObjectiveFunction.MAXIMIZE_RATIO,
                             risk_measure=RiskMeasure.VARIANCE, **common, **shorts)
        elif self.objective == "min_cvar":
            model = MeanRisk(objective_function=ObjectiveFunction.MINIMIZE_RISK,
                             risk_measure=RiskMeasure.CVAR, cvar_beta=self.cvar_beta,
                             **common, **shorts)
        elif self.objective == "risk_parity":
            model = RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, **common)
        else:
            model = MaximumDiversification(**common, **shorts)
        try:
            w = np.asarray(model.fit(np.asarray(returns, dtype=np.float64)).weights_, float)
        except Exception as exc:  # skfolio wraps solver failures in several types
            raise SolverError(f"skfolio could not solve {self.objective}: {exc}") from exc
        if self.objective == "risk_parity" and c.budget != 1.0:
            w = w * c.budget
        return w
