"""Long-only (or box-bounded) minimum-variance portfolios with a warm-started OSQP solver."""

from __future__ import annotations

import numpy as np
import osqp
import scipy.sparse as sp

from neuralfolio.errors import ConfigError, SolverError

__all__ = ["MinVarianceQP"]


class MinVarianceQP:
    """Minimum-variance problem ``min w' S w  s.t.  sum(w) = 1, lower <= w <= upper``.

    The problem is set up once; each :meth:`solve` only replaces the covariance values
    and warm-starts from the previous solution, which is what makes rolling labels cheap.
    The covariance is divided by its mean variance before solving so the solver's
    tolerances are relative to an objective of order one (at daily variances near 1e-4,
    OSQP's default tolerances would stop far from the optimum). Solutions are polished
    to the exact active set.

    Parameters
    ----------
    n_assets : int
    lower, upper : float
        Bounds on every weight; ``lower=0`` is long-only.
    eps : float
        Absolute and relative tolerance of OSQP on the scaled problem.

    Examples
    --------
    >>> qp = MinVarianceQP(2)
    >>> qp.solve(np.array([[0.04, 0.0], [0.0, 0.01]])).round(3)
    array([0.2, 0.8])
    """

    def __init__(self, n_assets: int, *, lower: float = 0.0, upper: float = 1.0,
                 eps: float = 1e-9) -> None:
        if n_assets < 1:
            raise ConfigError(f"n_assets must be >= 1, got {n_assets}.")
        if not lower <= 1.0 / n_assets <= upper:
            raise ConfigError(
                f"Bounds lower={lower}, upper={upper} leave no fully invested portfolio of "
                f"{n_assets} assets; need lower <= 1/{n_assets} <= upper."
            )
        self.n_assets = n_assets
        self.lower = lower
        self.upper = upper
        self.eps = eps
        n = n_assets
        rows, cols = np.triu_indices(n)
        # CSC order of an upper-triangular dense pattern: column by column, rows ascending.
        order = np.lexsort((rows, cols))
        self._rows, self._cols = rows[order], cols[order]
        pattern = sp.csc_matrix((np.ones(len(self._rows)), (self._rows, self._cols)), shape=(n, n))
        constraints = sp.vstack([np.ones((1, n)), sp.eye(n)], format="csc")
        lo = np.concatenate([[1.0], np.full(n, lower)])
        hi = np.concatenate([[1.0], np.full(n, upper)])
        self._solver = osqp.OSQP()
        self._solver.setup(
            P=pattern, q=np.zeros(n), A=constraints, l=lo, u=hi,
            eps_abs=eps, eps_rel=eps, polishing=True, max_iter=20_000, verbose=False,
        )
        self._last: np.ndarray | None = None

    def solve(self, covariance: np.ndarray) -> np.ndarray:
        """Solve for one covariance matrix.

        Parameters
        ----------
        covariance : ndarray, shape (n_assets, n_assets)
            Symmetric positive semi-definite.

        Returns
        -------
        ndarray, shape (n_assets,)
            Weights within the bounds, summing to one.
        """
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
        self._solver.update(Px=2.0 * cov[self._rows, self._cols] / scale)
        if self._last is not None:
            self._solver.warm_start(x=self._last)
        result = self._solver.solve(raise_error=False)
        status = result.info.status
        if status not in ("solved", "solved inaccurate") or result.x is None:
            raise SolverError(f"OSQP failed on the minimum-variance problem: {status}.")
        w = np.clip(result.x, self.lower, self.upper)
        w /= w.sum()
        self._last = w
        return w

    def solve_many(self, covariances: np.ndarray) -> np.ndarray:
        """Solve a sequence of problems in order, each warm-started from the last.

        Parameters
        ----------
        covariances : ndarray, shape (n_problems, n_assets, n_assets)

        Returns
        -------
        ndarray, shape (n_problems, n_assets)
        """
        return np.stack([self.solve(c) for c in covariances])
