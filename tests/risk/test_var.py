import math

import numpy as np
import pytest
from scipy import stats

from neuralfolio.errors import ConfigError, DataError
from neuralfolio.risk import (
    VAR_METHODS,
    conditional_value_at_risk,
    fit_student_t,
    value_at_risk,
)

# Twenty daily returns; sorted losses: 0.042, 0.031, 0.025, 0.015, 0.011, 0.008, ...
SAMPLE = np.array([
    0.012, -0.031, 0.005, 0.020, -0.008, 0.003, -0.015, 0.009, -0.042, 0.001,
    0.007, -0.002, 0.015, -0.011, 0.004, -0.025, 0.010, -0.006, 0.018, 0.002,
])


def _with_moments(mean: float, sd: float, n: int = 2000, seed: int = 3) -> np.ndarray:
    """Normal-looking returns whose sample mean and deviation (n - 1) are exactly given."""
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


# --------------------------------------------------------------------------- historical
# With n returns and k = (1 - c) n: VaR is the (floor(k) + 1)-th largest loss, CVaR the
# mean of the worst k outcomes (skfolio's convention, the lower quantile of the loss).
@pytest.mark.parametrize(
    ("confidence", "var", "cvar"),
    [
        (0.95, 0.031, 0.042),  # k = 1: VaR the 2nd largest loss, CVaR the largest
        (0.99, 0.042, 0.042),  # k = 0.2: both the largest loss
        (0.90, 0.025, (0.042 + 0.031) / 2),  # k = 2
        (0.85, 0.015, (0.042 + 0.031 + 0.025) / 3),  # k = 3
    ],
)
def test_historical_one_day_on_a_listed_sample(confidence, var, cvar):
    assert value_at_risk(SAMPLE, confidence) == pytest.approx(var, abs=1e-15)
    assert conditional_value_at_risk(SAMPLE, confidence) == pytest.approx(cvar, abs=1e-15)


def _ten_up_ten_down(periods: int = 10) -> np.ndarray:
    """+1% for 10 days, -1% for 10 days, repeated, then 9 more days: 20 * periods windows."""
    return np.tile(np.r_[np.full(10, 0.01), np.full(10, -0.01)], periods + 1)[: 20 * periods + 9]


def test_historical_ten_day_uses_overlapping_compounded_returns():
    # A 10-day window starting at s holds j down days, j = s or 20 - s (s mod 20): of 200
    # windows, 10 hold 10 down days (5%) and 20 hold 9 (10%).
    r = _ten_up_ten_down()
    assert r.size == 209
    loss_10 = 1 - 0.99**10  # 0.0956, not 0.10: compounded, not summed
    loss_9 = 1 - 1.01 * 0.99**9
    assert value_at_risk(r, 0.95, 10) == pytest.approx(loss_9, rel=1e-12)  # 11th largest
    assert conditional_value_at_risk(r, 0.95, 10) == pytest.approx(loss_10, rel=1e-12)
    assert value_at_risk(r, 0.99, 10) == pytest.approx(loss_10, rel=1e-12)
    assert conditional_value_at_risk(r, 0.99, 10) == pytest.approx(loss_10, rel=1e-12)


def test_historical_ten_day_of_constant_returns_is_the_compounded_gain():
    r = np.full(60, 0.001)
    expected = -(1.001**10 - 1)  # negative: the worst 10 days still gain
    assert value_at_risk(r, 0.95, 10) == pytest.approx(expected, rel=1e-12)
    assert conditional_value_at_risk(r, 0.95, 10) == pytest.approx(expected, rel=1e-12)


def test_historical_refuses_too_few_horizon_returns():
    r = _ten_up_ten_down()[:-1]  # 199 windows, 200 needed at 99%
    with pytest.raises(ConfigError, match=r"at least 200 overlapping 10-day returns.*209 daily"):
        value_at_risk(r, 0.99, 10)
    with pytest.raises(ConfigError, match="parametric method"):
        conditional_value_at_risk(np.full(48, 0.001), 0.95, 10)  # 39 windows, 40 needed
    assert value_at_risk(np.full(49, 0.001), 0.95, 10) < 0  # 40 windows are enough


def test_historical_matches_skfolio_and_is_ordered():
    from skfolio import measures

    r = _with_moments(0.0003, 0.012, n=500)
    assert value_at_risk(r, 0.99) == measures.value_at_risk(r, beta=0.99)
    assert conditional_value_at_risk(r, 0.99) == measures.cvar(r, beta=0.99)
    for method in VAR_METHODS:
        for h in (1, 10):
            v95, v99 = value_at_risk(r, 0.95, h, method), value_at_risk(r, 0.99, h, method)
            assert 0 < v95 < v99 <= conditional_value_at_risk(r, 0.99, h, method)


# ------------------------------------------------------------------------------ normal
@pytest.mark.parametrize("confidence", [0.95, 0.99])
@pytest.mark.parametrize("horizon", [1, 10])
def test_normal_closed_forms(confidence, horizon):
    mean, sd = 0.0004, 0.015
    r = _with_moments(mean, sd)
    mu_h, sd_h = mean * horizon, sd * math.sqrt(horizon)
    var = -stats.norm.ppf(1 - confidence, loc=mu_h, scale=sd_h)
    z = stats.norm.ppf(confidence)
    cvar = -mu_h + sd_h * stats.norm.pdf(z) / (1 - confidence)
    assert value_at_risk(r, confidence, horizon, "normal") == pytest.approx(var, rel=1e-10)
    assert conditional_value_at_risk(r, confidence, horizon, "normal") == pytest.approx(
        cvar, rel=1e-10)


def test_normal_cvar_is_the_mean_loss_beyond_var_by_integration():
    r = _with_moments(0.0004, 0.015)
    var = value_at_risk(r, 0.99, 10, "normal")
    dist = stats.norm(loc=0.004, scale=0.015 * math.sqrt(10))
    tail_mean = dist.expect(lambda x: x, ub=-var, conditional=True)
    assert conditional_value_at_risk(r, 0.99, 10, "normal") == pytest.approx(-tail_mean,
                                                                              rel=1e-7)


# --------------------------------------------------------------------------- student_t
T_DATA = stats.t.rvs(4, loc=0.0003, scale=0.008, size=4000, random_state=7)


def test_student_t_fit_matches_scipy_and_the_sample_variance():
    df, loc, scale = fit_student_t(T_DATA)
    assert df == pytest.approx(stats.t.fit(T_DATA)[0], rel=1e-2)
    assert 3 < df < 6
    assert loc == pytest.approx(T_DATA.mean(), rel=1e-12)
    assert scale**2 * df / (df - 2) == pytest.approx(T_DATA.var(ddof=1), rel=1e-12)


def test_student_t_degrees_of_freedom_are_floored_at_three():
    wild = stats.t.rvs(2.2, scale=0.01, size=4000, random_state=1)
    assert stats.t.fit(wild)[0] < 3
    assert fit_student_t(wild)[0] == 3.0


@pytest.mark.parametrize("confidence", [0.95, 0.99])
@pytest.mark.parametrize("horizon", [1, 10])
def test_student_t_closed_forms_given_the_fitted_parameters(confidence, horizon):
    df, loc, scale = fit_student_t(T_DATA)
    dist = stats.t(df, loc=loc * horizon, scale=scale * math.sqrt(horizon))
    var = -dist.ppf(1 - confidence)
    cvar = -dist.expect(lambda x: x, ub=-var, conditional=True)  # numerical, not the formula
    assert value_at_risk(T_DATA, confidence, horizon, "student_t") == pytest.approx(
        var, rel=1e-9)
    assert conditional_value_at_risk(T_DATA, confidence, horizon, "student_t") == pytest.approx(
        cvar, rel=1e-6)


def test_student_t_has_heavier_tails_than_normal_at_99_percent():
    for horizon in (1, 10):
        for fn in (value_at_risk, conditional_value_at_risk):
            t_loss = fn(T_DATA, 0.99, horizon, "student_t")
            assert t_loss > 1.05 * fn(T_DATA, 0.99, horizon, "normal")


# ------------------------------------------------------------------------- monte_carlo
@pytest.mark.parametrize("horizon", [1, 10])
@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_monte_carlo_converges_to_normal(horizon, confidence):
    # Paths are compounded, which pulls h-day losses below the additive normal by about
    # z * sd * sqrt(h) / 2 relative; at 0.2% daily deviation that is under 1% at 10 days.
    r = _with_moments(0.0001, 0.002)
    for fn in (value_at_risk, conditional_value_at_risk):
        mc = fn(r, confidence, horizon, "monte_carlo", n_simulations=200_000, seed=0)
        assert mc == pytest.approx(fn(r, confidence, horizon, "normal"), rel=0.02)


def test_monte_carlo_ten_day_is_the_compounded_normal():
    # At 1% daily deviation compounding matters (several percent at 99%); the simulated
    # 10-day loss then matches the log-normal whose log has the mean and variance of ten
    # log(1 + r), r ~ N(mu, sigma) (Gauss-Hermite moments).
    mean, sd, h = 0.0005, 0.01, 10
    r = _with_moments(mean, sd)
    nodes, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    logs = np.log1p(mean + sd * nodes)
    m = h * (w @ logs)
    s = math.sqrt(h * (w @ (logs - w @ logs) ** 2))
    for c in (0.95, 0.99):
        q = m + s * stats.norm.ppf(1 - c)
        var = 1 - math.exp(q)
        cvar = 1 - math.exp(m + s * s / 2) * stats.norm.cdf((q - m) / s - s) / (1 - c)
        mc_var = value_at_risk(r, c, h, "monte_carlo", n_simulations=200_000)
        mc_cvar = conditional_value_at_risk(r, c, h, "monte_carlo", n_simulations=200_000)
        assert mc_var == pytest.approx(var, rel=0.01)
        assert mc_cvar == pytest.approx(cvar, rel=0.01)
        assert mc_var < value_at_risk(r, c, h, "normal")


def test_monte_carlo_is_reproducible_by_seed():
    r = _with_moments(0.0, 0.01, n=300)
    a = value_at_risk(r, 0.99, 5, "monte_carlo", n_simulations=20_000, seed=4)
    assert a == value_at_risk(r, 0.99, 5, "monte_carlo", n_simulations=20_000, seed=4)
    assert a != value_at_risk(r, 0.99, 5, "monte_carlo", n_simulations=20_000, seed=5)


# --------------------------------------------------------------------------- portfolio
def test_asset_returns_with_weights_form_the_portfolio_first():
    rng = np.random.default_rng(0)
    assets = rng.normal(0.0003, 0.01, size=(300, 3))
    w = np.array([0.5, 0.3, 0.2])
    for method in VAR_METHODS:
        for fn in (value_at_risk, conditional_value_at_risk):
            assert fn(assets, 0.95, 10, method, weights=w) == pytest.approx(
                fn(assets @ w, 0.95, 10, method), rel=1e-12)


def test_zero_volatility_is_a_point_mass():
    r = np.full(50, 0.002)
    for method in ("normal", "student_t", "monte_carlo"):
        assert value_at_risk(r, 0.99, 1, method) == pytest.approx(-0.002)
        assert conditional_value_at_risk(r, 0.99, 1, method) == pytest.approx(-0.002)


# -------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"confidence": 0.0}, ConfigError, r"confidence must lie strictly between 0 and 1"),
        ({"confidence": 1.0}, ConfigError, r"confidence must lie strictly between 0 and 1"),
        ({"confidence": 99}, ConfigError, r"give 99% as 0.99"),
        ({"confidence": -0.5}, ConfigError, r"strictly between 0 and 1.*-0.5"),
        ({"confidence": float("nan")}, ConfigError, r"strictly between 0 and 1"),
        ({"confidence": "0.95"}, ConfigError, r"confidence must be a number"),
        ({"horizon": 0}, ConfigError, r"horizon must be at least 1 trading day, got 0"),
        ({"horizon": -5}, ConfigError, r"horizon must be at least 1"),
        ({"horizon": 2.5}, ConfigError, r"horizon must be a whole number of trading days"),
        ({"horizon": True}, ConfigError, r"horizon must be a whole number"),
        ({"method": "garch"}, ConfigError,
         r"method must be one of 'historical', 'normal', 'student_t', 'monte_carlo', "
         r"got 'garch'"),
        ({"method": "monte_carlo", "n_simulations": 10}, ConfigError,
         r"n_simulations must be a whole number of at least 40"),
        ({"weights": [1.0]}, ConfigError, r"weights were given but returns is one series"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, message):
    for fn in (value_at_risk, conditional_value_at_risk):
        with pytest.raises(error, match=message):
            fn(SAMPLE, **kwargs)


@pytest.mark.parametrize(
    ("returns", "kwargs", "error", "message"),
    [
        ([], {}, DataError, r"returns is empty"),
        (np.empty((0, 2)), {"weights": [0.5, 0.5]}, DataError, r"returns is empty"),
        ([0.01, np.nan, 0.02], {}, DataError, r"1 NaN or infinite value\(s\), the first in row 1"),
        ([0.01, np.inf], {}, DataError, r"NaN or infinite"),
        ([0.01, -1.5], {}, DataError, r"below -1.*not percentages"),
        (np.zeros((5, 2)), {}, ConfigError, r"give weights of shape \(2,\)"),
        (np.zeros((5, 2)), {"weights": [1.0]}, ConfigError, r"one weight per asset.*\(2,\)"),
        (np.zeros((5, 2)), {"weights": [np.nan, 1]}, ConfigError, r"weights hold NaN"),
        (np.zeros((2, 2, 2)), {}, DataError, r"shape \(n_obs,\) or \(n_obs, n_assets\)"),
        (["a", "b"], {}, DataError, r"returns must be numbers"),
        ([0.01], {"method": "normal"}, DataError, r"'normal' needs at least 2 daily returns"),
        (SAMPLE[:5], {"method": "student_t"}, DataError, r"'student_t' needs at least 10"),
    ],
)
def test_bad_returns_are_refused(returns, kwargs, error, message):
    for fn in (value_at_risk, conditional_value_at_risk):
        with pytest.raises(error, match=message):
            fn(returns, **kwargs)
