"""Every objective: valid, look-ahead-free labels on bundled data, checked for optimality."""

import numpy as np
import pandas as pd
import pytest

from neuralfolio.data import load_prices, simple_returns
from neuralfolio.errors import ConfigError
from neuralfolio.optimize import OBJECTIVES, Constraints, PortfolioSolver, rolling_labels
from neuralfolio.risk import ledoit_wolf

WINDOW = 60


@pytest.fixture(scope="module")
def gfc():
    return load_prices("gfc").iloc[:150]  # BAC, JPM, GE, HD from 2005: 90 label dates


def _random_portfolios(n_assets, n=3000, seed=0):
    return np.random.default_rng(seed).dirichlet(np.ones(n_assets) * 0.7, size=n)


def _cvar(port, beta=0.95):
    from skfolio import measures

    return measures.cvar(port, beta)


def _check_optimal(objective, w, window, cov):
    mu = window.mean(axis=0)
    rand = _random_portfolios(len(w))
    if objective == "min_variance":
        assert w @ cov @ w <= np.einsum("ki,ij,kj->k", rand, cov, rand).min() + 1e-15
    elif objective == "mean_variance":
        util = lambda x: x @ mu - 1.0 * np.einsum("...i,ij,...j->...", x, cov, x)  # noqa: E731
        assert util(w) >= util(rand).max() - 1e-12
    elif objective == "max_sharpe" and mu.max() <= 0:  # documented fallback
        np.testing.assert_allclose(w, PortfolioSolver("min_variance", len(w)).solve(window, cov),
                                   atol=1e-8)
    elif objective == "max_sharpe":
        sharpe = lambda x: (x @ mu) / np.sqrt(np.einsum("...i,ij,...j->...", x, cov, x))  # noqa: E731
        assert sharpe(w) >= sharpe(rand).max() - 1e-6
    elif objective == "min_cvar":
        assert _cvar(window @ w) <= min(_cvar(window @ x) for x in rand[:500]) + 1e-9
    elif objective == "risk_parity":
        rc = w * (cov @ w)
        np.testing.assert_allclose(rc / rc.sum(), 1 / len(w), rtol=1e-3)  # skfolio's accuracy
    elif objective == "max_diversification":
        vol = np.sqrt(np.diag(cov))
        dr = lambda x: (x @ vol) / np.sqrt(np.einsum("...i,ij,...j->...", x, cov, x))  # noqa: E731
        assert dr(w) >= dr(rand).max() - 1e-6


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_labels_are_valid_optimal_and_free_of_look_ahead(gfc, objective):
    labels = rolling_labels(gfc, objective=objective, window=WINDOW)
    w = labels.weights
    assert w.index.equals(gfc.index[WINDOW:])
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    assert (w.to_numpy() >= -1e-8).all()
    assert labels.params["objective"] == objective

    r = simple_returns(gfc).to_numpy()
    for k in (0, 45, 89):  # the window behind label k is returns[k : k + WINDOW]
        window = r[k : k + WINDOW]
        _check_optimal(objective, w.iloc[k].to_numpy(), window, ledoit_wolf(window)[0])

    d = gfc.index[120]
    shocked = gfc.copy()
    shocked.loc[d:, "GE"] *= 2.5
    shocked.loc[d, "BAC"] *= 0.3
    after = rolling_labels(shocked, objective=objective, window=WINDOW).weights
    pd.testing.assert_frame_equal(w.loc[w.index < d], after.loc[after.index < d])
    assert not np.allclose(w.loc[d], after.loc[d])


def test_mean_variance_fast_path_matches_skfolio(gfc):
    from skfolio.optimization import MeanRisk, ObjectiveFunction
    from skfolio.prior import EmpiricalPrior

    from neuralfolio.optimize._objectives import _GivenCovariance

    r = simple_returns(gfc).to_numpy()[:WINDOW]
    cov = ledoit_wolf(r)[0]
    for aversion in (5.0, 50.0, 500.0):
        ours = PortfolioSolver("mean_variance", 4, risk_aversion=aversion).solve(r, cov)
        ref = MeanRisk(
            objective_function=ObjectiveFunction.MAXIMIZE_UTILITY, risk_aversion=aversion,
            prior_estimator=EmpiricalPrior(covariance_estimator=_GivenCovariance.make(cov)),
            solver_params={"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12},
        ).fit(r).weights_
        assert np.abs(ours - ref).max() <= 1e-4


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_bounds_are_respected(gfc, objective):
    r = simple_returns(gfc).to_numpy()[:WINDOW]
    w = PortfolioSolver(objective, 4, Constraints(lower=0.1, upper=0.4)).solve(
        r, ledoit_wolf(r)[0])
    assert w.sum() == pytest.approx(1.0, abs=1e-6)
    assert (w >= 0.1 - 1e-6).all() and (w <= 0.4 + 1e-6).all()


def test_bounded_shorts_and_budget(gfc):
    r = simple_returns(gfc).to_numpy()[:WINDOW]
    cov = ledoit_wolf(r)[0]
    w = PortfolioSolver("min_variance", 4, Constraints(lower=-0.3, upper=1.0)).solve(r, cov)
    assert w.sum() == pytest.approx(1.0) and w.min() >= -0.3 - 1e-9
    long_only = PortfolioSolver("min_variance", 4).solve(r, cov)
    assert w @ cov @ w <= long_only @ cov @ long_only + 1e-15
    half = PortfolioSolver("min_variance", 4, Constraints(budget=0.5)).solve(r, cov)
    np.testing.assert_allclose(half, 0.5 * long_only, atol=1e-6)
    capped = PortfolioSolver("max_sharpe", 4, Constraints(lower=-0.5, upper=1.0,
                                                          max_short=0.1)).solve(r, cov)
    assert -capped[capped < 0].sum() <= 0.1 + 1e-6


def test_max_sharpe_falls_back_when_nothing_has_a_positive_mean():
    rng = np.random.default_rng(0)
    r = rng.normal(-0.002, 0.01, (60, 3))
    cov = ledoit_wolf(r)[0]
    solver = PortfolioSolver("max_sharpe", 3)
    w = solver.solve(r, cov)
    assert solver.n_fallbacks_ == 1
    np.testing.assert_allclose(w, PortfolioSolver("min_variance", 3).solve(r, cov))


@pytest.mark.parametrize("cov", ["sample", "ewma"])
def test_other_covariance_estimators_feed_the_labels(gfc, cov):
    a = rolling_labels(gfc, window=WINDOW, cov=cov).weights
    b = rolling_labels(gfc, window=WINDOW).weights
    assert a.shape == b.shape and not np.allclose(a, b)


def test_parallel_labels_equal_serial(gfc):
    serial = rolling_labels(gfc, objective="min_variance", window=WINDOW)
    threaded = rolling_labels(gfc, objective="min_variance", window=WINDOW, n_jobs=2,
                              backend="threading")
    np.testing.assert_array_equal(threaded.weights, serial.weights)
    sk_serial = rolling_labels(gfc.iloc[:80], objective="risk_parity", window=WINDOW)
    sk_procs = rolling_labels(gfc.iloc[:80], objective="risk_parity", window=WINDOW, n_jobs=2)
    np.testing.assert_array_equal(sk_procs.weights, sk_serial.weights)


def test_bad_parameters_are_named(gfc):
    with pytest.raises(ConfigError, match=r"Unknown objective 'max_return'.*min_variance"):
        rolling_labels(gfc, objective="max_return")
    with pytest.raises(ConfigError, match="Unknown covariance estimator 'shrunk'"):
        rolling_labels(gfc, window=WINDOW, cov="shrunk")
    with pytest.raises(ConfigError, match="risk_parity is long-only"):
        PortfolioSolver("risk_parity", 4, Constraints(lower=-0.1))
    with pytest.raises(ConfigError, match="risk_aversion must be > 0"):
        PortfolioSolver("mean_variance", 4, risk_aversion=0)
    with pytest.raises(ConfigError, match=r"summing to 1\.0"):
        PortfolioSolver("min_variance", 4, Constraints(lower=0.3))
