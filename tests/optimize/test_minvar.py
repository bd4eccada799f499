import numpy as np
import pytest
from skfolio.moments import LedoitWolf
from skfolio.optimization import MeanRisk
from skfolio.prior import EmpiricalPrior

from neuralfolio.data import load_prices, simple_returns
from neuralfolio.errors import ConfigError, SolverError
from neuralfolio.optimize import MinVarianceQP
from neuralfolio.risk import ledoit_wolf


def _skfolio_min_variance(window: np.ndarray) -> np.ndarray:
    model = MeanRisk(
        prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()),
        solver_params={"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12},
    )
    return model.fit(window).weights_


def test_matches_skfolio_on_bundled_sp500_windows():
    returns = simple_returns(load_prices("sp500")).to_numpy()
    qp = MinVarianceQP(20)
    for start in (0, 2000, 5000, 8000):
        window = returns[start : start + 126]
        ours = qp.solve(ledoit_wolf(window)[0])
        assert np.abs(ours - _skfolio_min_variance(window)).max() <= 1e-4


def test_kkt_conditions_hold():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((60, 8)) * np.linspace(0.005, 0.04, 8)
    cov = ledoit_wolf(a)[0]
    w = MinVarianceQP(8).solve(cov)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert (w >= 0).all()
    grad = 2 * cov @ w
    held = w > 1e-8
    lam = grad[held].mean()
    # Equal marginal variance on held assets; no unheld asset would lower the variance.
    np.testing.assert_allclose(grad[held], lam, rtol=1e-6)
    assert (grad[~held] >= lam * (1 - 1e-6)).all()


def test_two_asset_closed_form_and_bounds():
    cov = np.array([[0.04, 0.0], [0.0, 0.01]])
    np.testing.assert_allclose(MinVarianceQP(2).solve(cov), [0.2, 0.8], atol=1e-8)
    capped = MinVarianceQP(2, upper=0.7).solve(cov)
    np.testing.assert_allclose(capped, [0.3, 0.7], atol=1e-8)


def test_warm_started_sequence_equals_cold_solves():
    rng = np.random.default_rng(4)
    covs = [ledoit_wolf(rng.standard_normal((50, 6)) * 0.01)[0] for _ in range(5)]
    warm = MinVarianceQP(6).solve_many(np.stack(covs))
    cold = np.stack([MinVarianceQP(6).solve(c) for c in covs])
    np.testing.assert_allclose(warm, cold, atol=1e-7)


def test_bad_inputs_are_named():
    with pytest.raises(ConfigError, match="shape"):
        MinVarianceQP(3).solve(np.eye(2))
    with pytest.raises(SolverError, match="non-finite"):
        MinVarianceQP(2).solve(np.array([[np.nan, 0], [0, 1.0]]))
    with pytest.raises(ConfigError, match="leave no portfolio of 4 assets"):
        MinVarianceQP(4, upper=0.2)
