"""The minimum-variance QP with a cap on the total short position (a gross leverage limit)."""

import numpy as np
import pytest

from neuralfolio.errors import ConfigError
from neuralfolio.optimize import Constraints, MinVarianceQP, PortfolioSolver


@pytest.fixture(scope="module")
def returns():
    rng = np.random.default_rng(0)
    x = 0.01 * rng.standard_normal((300, 8)) + 0.01 * rng.standard_normal((300, 1))
    x[:, 0] += 0.5 * x[:, 1]
    return x


@pytest.mark.parametrize("max_short", [0.1, 0.25, None])
def test_equals_skfolio(returns, max_short):
    from skfolio.optimization import MeanRisk

    cov = np.cov(returns.T)
    w = MinVarianceQP(8, lower=-1, upper=2, max_short=max_short).solve(cov)
    ref = MeanRisk(min_weights=-1, max_weights=2, max_short=max_short).fit(returns).weights_
    assert w @ cov @ w <= ref @ cov @ ref * (1 + 1e-6)
    np.testing.assert_allclose(w, ref, atol=2e-4)
    if max_short is not None:
        assert np.maximum(-w, 0).sum() <= max_short + 1e-9
        assert np.abs(w).sum() <= 1 + 2 * max_short + 1e-9


def test_zero_short_is_long_only_and_warm_starts_agree(returns):
    cov = np.cov(returns.T)
    qp = MinVarianceQP(8, lower=-1, upper=2, max_short=0.0)
    w = qp.solve(cov)
    np.testing.assert_allclose(w, MinVarianceQP(8).solve(cov), atol=1e-7)
    again = qp.solve(cov)  # warm-started from the extended solution
    np.testing.assert_allclose(again, w, atol=1e-9)


def test_solver_applies_it_to_min_variance(returns):
    solver = PortfolioSolver("min_variance", 8, Constraints(-0.5, 1.5, max_short=0.1))
    w = solver.solve(returns, np.cov(returns.T))
    assert np.maximum(-w, 0).sum() <= 0.1 + 1e-9


def test_bad_max_short():
    with pytest.raises(ConfigError, match="max_short"):
        MinVarianceQP(3, lower=-1, max_short=float("nan"))
