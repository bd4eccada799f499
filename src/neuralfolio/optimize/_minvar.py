"""Fast quadratic portfolio problems: minimum variance and mean-variance utility.

Both are set up once in OSQP and re-solved along a rolling window with warm starts: each
solve only replaces the covariance values (and the expected returns). The covariance is
divided by its mean variance first, so OSQP's tolerances are relative to an objective of
order one (at daily variances near 1e-4 its default tolerances would stop far from the
optimum), and solutions are polished to the exact active set.
"""

from __future__ import annotations

import numpy as np
import osqp
import scipy.sparse as sp

from neuralfolio.errors import ConfigError, SolverError

__all__ = ["MeanVarianceQP", "MinVarianceQP", "bounds_array"]


def bounds_array(value: float | np.ndarray, n_assets: int, name: str) -> np.ndarray:
    """A per-asset bound vector, shape (n_assets,), from a scalar or a vector."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_assets, float(arr))
    if arr.shape != (n_assets,) or not np.isfinite(arr).all():
        raise ConfigError(
            f"{name} must be a finite number or {n_assets} finite numbers, one per asset; "
            f"got {value!r}."
        )
    return arr


class _BoxBudgetQP:
    """``min 1/2 w'Pw + q'w  s.t.  sum(w) = budget, lower <= w <= upper`` and, with
    ``max_short``, ``sum(max(-w, 0)) <= max_short`` (a gross leverage limit: with the budget
    fixed, ``sum |w| = budget + 2 * short``). The short side is modelled by ``n`` auxiliary
    variables ``s >= max(-w, 0)`` with ``sum(s) <= max_short``."""

    def __init__(self, n_assets: int, *, lower: float | np.ndarray = 0.0,
                 upper: float | np.ndarray = 1.0, budget: float = 1.0,
                 max_short: float | None = None, eps: float = 1e-9) -> None:
        if n_assets < 1:
            raise ConfigError(f"n_assets must be >= 1, got {n_assets}.")
        lo = bounds_array(lower, n_assets, "lower")
        hi = bounds_array(upper, n_assets, "upper")
        if (lo > hi).any():
            i = int(np.argmax(lo > hi))
            raise ConfigError(f"lower bound {lo[i]} exceeds upper bound {hi[i]} on asset {i}.")
        if not lo.sum() <= budget <= hi.sum():
            raise ConfigError(
                f"Bounds lower={lower}, upper={upper} leave no portfolio of {n_assets} assets "
                f"with weights summing to {budget}; need sum(lower) <= {budget} <= sum(upper)."
            )
        if max_short is not None and not (np.isfinite(max_short) and max_short >= 0):
            raise ConfigError(f"max_short must be a finite number >= 0, got {max_short}.")
        self.n_assets, self.lower, self.upper, self.budget, self.eps = n_assets, lo, hi, budget, eps
        # the short side matters only where shorts are allowed
        self.max_short = (float(max_short) if max_short is not None and (lo < 0).any()
                          else None)
        n = n_assets
        n_vars = 2 * n if self.max_short is not None else n
        rows, cols = np.triu_indices(n)
        order = np.lexsort((rows, cols))  # CSC order: column by column, rows ascending
        self._rows, self._cols = rows[order], cols[order]
        pattern = sp.csc_matrix((np.ones(len(self._rows)), (self._rows, self._cols)),
                                shape=(n_vars, n_vars))
        if self.max_short is None:
            a = sp.vstack([np.ones((1, n)), sp.eye(n)], format="csc")
            low, up = np.concatenate([[budget], lo]), np.concatenate([[budget], hi])
        else:
            eye, ones = sp.eye(n, format="csc"), sp.csc_matrix(np.ones((1, n)))
            a = sp.bmat([
                [ones, None],   # budget
                [eye, None],    # lower <= w <= upper
                [eye, eye],     # s + w >= 0
                [None, eye],    # s >= 0
                [None, ones],   # sum s <= max_short
            ], format="csc")
            low = np.concatenate([[budget], lo, np.zeros(2 * n), [0.0]])
            up = np.concatenate([[budget], hi, np.full(2 * n, np.inf), [self.max_short]])
        self._n_vars = n_vars
        self._solver = osqp.OSQP()
        self._solver.setup(
            P=pattern, q=np.zeros(n_vars), A=a, l=low, u=up,
            eps_abs=eps, eps_rel=eps, polishing=True, max_iter=20_000, verbose=False,
        )
        self._last: np.ndarray | None = None

    def _scaled(self, covariance: np.ndarray) -> tuple[np.ndarray, float]:
        cov = np.asarray(covariance, dtype=np.float64)
        if cov.shape != (self.n_assets, self.n_assets):
            raise ConfigError(
                f"covariance has shape {cov.shape}; this problem has {self.n_assets} assets."
            )
        if not np.isfinite(cov).all():
            raise SolverError("covariance has non-finite entries; check the returns window.")
        scale = float(np.trace(cov)) / self.n_assets
        if scale <= 0:
            raise SolverError("covariance has zero variance on every asset; nothing to minimize.")
        return cov, scale

    def _solve(self, p_dense: np.ndarray, q: np.ndarray, what: str) -> np.ndarray:
        if self._n_vars > self.n_assets:
            q = np.concatenate([q, np.zeros(self._n_vars - self.n_assets)])
        self._solver.update(Px=p_dense[self._rows, self._cols], q=q)
        if self._last is not None:
            self._solver.warm_start(x=self._last)
        result = self._solver.solve(raise_error=False)
        status = result.info.status
        if status not in ("solved", "solved inaccurate") or result.x is None:
            raise SolverError(f"OSQP failed on the {what} problem: {status}.")
        w = np.clip(result.x[: self.n_assets], self.lower, self.upper)
        if self.budget != 0 and (self.lower >= 0).all():
            w *= self.budget / w.sum()  # remove rounding noise; exact for long-only
        self._last = (w if self._n_vars == self.n_assets
                      else np.concatenate([w, np.maximum(-w, 0.0)]))
        return w


class MinVarianceQP(_BoxBudgetQP):
    """Minimum variance ``min w'Sw  s.t.  sum(w) = budget, lower <= w <= upper``.

    Parameters
    ----------
    n_assets : int
    lower, upper : float or ndarray of shape (n_assets,)
        Bounds on each weight; ``lower=0`` is long-only, a negative ``lower`` bounds shorts.
    budget : float
        Sum of the weights.
    max_short : float, optional
        Cap on the total short position ``sum(max(-w, 0))`` (with a negative ``lower``);
        ``budget + 2 * max_short`` is the gross leverage limit ``sum |w|``.
    eps : float
        Absolute and relative tolerance of OSQP on the scaled problem.

    Examples
    --------
    >>> qp = MinVarianceQP(2)
    >>> qp.solve(np.array([[0.04, 0.0], [0.0, 0.01]])).round(3)
    array([0.2, 0.8])
    """

    def solve(self, covariance: np.ndarray) -> np.ndarray:
        """Weights, shape (n_assets,), for a covariance of shape (n_assets, n_assets)."""
        cov, scale = self._scaled(covariance)
        return self._solve(2.0 * cov / scale, np.zeros(self.n_assets), "minimum-variance")

    def solve_many(self, covariances: np.ndarray) -> np.ndarray:
        """Solve in order, each warm-started from the last.

        Parameters
        ----------
        covariances : ndarray, shape (n_problems, n_assets, n_assets)

        Returns
        -------
        ndarray, shape (n_problems, n_assets)
        """
        return np.stack([self.solve(c) for c in covariances])


class MeanVarianceQP(_BoxBudgetQP):
    """Mean-variance utility ``max mu'w - risk_aversion * w'Sw`` under the same constraints.

    The convention is skfolio's (``MeanRisk`` with ``MAXIMIZE_UTILITY``): no factor 1/2.

    Parameters
    ----------
    n_assets : int
    risk_aversion : float
        Larger values tilt the solution towards minimum variance; must be > 0.
    lower, upper, budget, max_short, eps
        As in :class:`MinVarianceQP`.
    """

    def __init__(self, n_assets: int, *, risk_aversion: float = 1.0, **kwargs) -> None:
        if not risk_aversion > 0:
            raise ConfigError(f"risk_aversion must be > 0, got {risk_aversion}.")
        super().__init__(n_assets, **kwargs)
        self.risk_aversion = float(risk_aversion)

    def solve(self, covariance: np.ndarray, expected_returns: np.ndarray) -> np.ndarray:
        """Weights, shape (n_assets,).

        Parameters
        ----------
        covariance : ndarray, shape (n_assets, n_assets)
        expected_returns : ndarray, shape (n_assets,)
            In the same units as the covariance (daily, for daily covariances).
        """
        cov, scale = self._scaled(covariance)
        mu = np.asarray(expected_returns, dtype=np.float64)
        if mu.shape != (self.n_assets,) or not np.isfinite(mu).all():
            raise ConfigError(
                f"expected_returns must be {self.n_assets} finite numbers, got shape {mu.shape}."
            )
        return self._solve(2.0 * self.risk_aversion * cov / scale, -mu / scale, "mean-variance")

    def solve_many(self, covariances: np.ndarray, expected_returns: np.ndarray) -> np.ndarray:
        """Solve in order; shapes (n, n_assets, n_assets) and (n, n_assets) -> (n, n_assets)."""
        return np.stack([self.solve(c, m) for c, m in zip(covariances, expected_returns,
                                                          strict=True)])
