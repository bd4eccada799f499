"""Rolling moments stepped one row at a time equal the batch estimators of the same window."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralfolio.errors import ConfigError, DataError, InsufficientHistoryError
from neuralfolio.risk import (
    EWMACovariance,
    RollingMoments,
    ledoit_wolf,
    rolling_covariances,
    sample_covariance,
    shrunk_inverse_ones,
    woodbury_is_cheaper,
)


def _rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / max(np.abs(b).max(), 1e-300))


def _panel(seed, n_obs, n_assets, scale=0.01, drift=0.0005):
    rng = np.random.default_rng(seed)
    vols = rng.uniform(0.3, 3.0, n_assets) * scale
    common = rng.normal(0, scale, (n_obs, 1))
    return drift + 0.5 * common + rng.normal(0, 1, (n_obs, n_assets)) * vols


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_assets=st.integers(1, 12), window=st.integers(2, 60),
       extra=st.integers(0, 150), every=st.sampled_from([1, 7, 256]),
       scale=st.sampled_from([1e-4, 0.01, 0.2]))
def test_stepped_moments_equal_the_batch_estimators(seed, n_assets, window, extra, every,
                                                    scale):
    r = _panel(seed, window + extra, n_assets, scale)
    m = RollingMoments(window, recompute_every=every).start(r[:window])
    for k in range(window, len(r)):
        m.push(r[k])
    tail = r[-window:]
    np.testing.assert_array_equal(m.returns(), tail)
    assert _rel(m.mean(), tail.mean(axis=0)) < 1e-10
    cov, shrink = m.ledoit_wolf()
    cov_b, shrink_b = ledoit_wolf(tail)
    assert _rel(cov, cov_b) < 1e-10
    # the intensity is a fraction in [0, 1]; with two returns its true value is 0 and both
    # estimates are rounding (a few 1e-12), so the bound is absolute
    assert abs(shrink - float(shrink_b)) <= 1e-10
    if window > 1:
        assert _rel(m.covariance(), sample_covariance(tail)) < 1e-10
        assert _rel(m.variances(), tail.var(axis=0, ddof=1)) < 1e-10


@pytest.mark.parametrize("every", [256, 10**9])
def test_no_drift_over_thousands_of_steps(every):
    # 6000 pushes; without the exact rebuilds (every=1e9) the rolling sums still hold to
    # 1e-10 here, and with them the error stays at rounding level all along.
    r = _panel(3, 6126, 15) * np.linspace(1, 20, 6126)[:, None]  # volatility regime drift
    m = RollingMoments(126, recompute_every=every).start(r[:126])
    worst = 0.0
    for k in range(126, len(r)):
        m.push(r[k])
        if k % 97 == 0 or k == len(r) - 1:
            worst = max(worst, _rel(m.ledoit_wolf()[0], ledoit_wolf(r[k - 125 : k + 1])[0]))
    assert worst < 1e-10


def test_rebuild_resets_the_sums_exactly():
    r = _panel(5, 400, 6)
    m = RollingMoments(50, recompute_every=30).start(r[:50])
    for k in range(50, 80):  # the 30th push rebuilds
        m.push(r[k])
    fresh = RollingMoments(50).start(r[30:80])
    assert m._since == 0
    assert _rel(m.ledoit_wolf()[0], fresh.ledoit_wolf()[0]) < 1e-14


def test_ewma_stepped_equals_the_rolling_estimate():
    r = _panel(7, 3000, 8)
    batch = rolling_covariances(r, 60, "ewma", decay=0.97)
    est = EWMACovariance(0.97, warmup=60).fit(r[:60])
    for k in range(60, len(r)):
        est.update(r[k])
    assert _rel(est.covariance_, batch[-1]) < 1e-12


def test_bad_rows_are_refused_and_change_nothing():
    r = _panel(1, 100, 3)
    m = RollingMoments(40).start(r[:40])
    before = m.ledoit_wolf()[0].copy()
    with pytest.raises(DataError, match="non-finite"):
        m.push(np.array([0.01, np.nan, 0.0]))
    with pytest.raises(DataError, match="3 values"):
        m.push(np.zeros(4))
    np.testing.assert_array_equal(m.ledoit_wolf()[0], before)
    with pytest.raises(InsufficientHistoryError, match="needs at least 40"):
        RollingMoments(40).start(r[:39])
    with pytest.raises(DataError, match="non-finite"):
        RollingMoments(3).start(np.array([[0.1], [np.inf], [0.0]]))
    with pytest.raises(ConfigError, match=">= 2"):
        RollingMoments(1)


# ------------------------------------------------------------- unconstrained weights
def _factor_panel(seed, n_obs, n_assets, idio):
    """Returns with one strong common factor and idiosyncratic noise ``idio`` times as
    large: small ``idio`` makes the sample covariance nearly singular even for W > n."""
    rng = np.random.default_rng(seed)
    beta = rng.uniform(0.5, 1.5, n_assets)
    common = rng.normal(0, 0.01, (n_obs, 1))
    return 0.0003 + common * beta + idio * 0.01 * rng.normal(0, 1, (n_obs, n_assets))


def _batch_unconstrained(window_returns):
    """The batch weights, or None for a window whose shrunk covariance is too ill-conditioned
    for any two solvers to agree to 1e-10 (no shrinkage, e.g. two returns)."""
    cov = ledoit_wolf(window_returns)[0]
    if np.linalg.cond(cov) > 1e5:
        return None
    u = np.linalg.solve(cov, np.ones(cov.shape[0]))
    return u / u.sum()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_assets=st.integers(1, 60), w=st.integers(2, 80),
       a=st.floats(1e-3, 10.0), b=st.floats(0.0, 10.0))
def test_woodbury_inverse_equals_the_direct_solve(seed, n_assets, w, a, b):
    # S = a I + b X'X, singular X'X whenever w <= n_assets
    x = np.random.default_rng(seed).normal(0, 1, (w, n_assets))
    x -= x.mean(axis=0)
    s = a * np.eye(n_assets) + b * (x.T @ x)
    expected = np.linalg.solve(s, np.ones(n_assets))
    assert _rel(shrunk_inverse_ones(x, a, b), expected) < 1e-10


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_assets=st.integers(1, 50), window=st.integers(2, 70),
       extra=st.integers(1, 120), every=st.sampled_from([1, 7, 256]),
       idio=st.sampled_from([1.0, 0.1, 0.01]), read_every=st.sampled_from([1, 3, 50]))
def test_stepped_unconstrained_weights_equal_the_batch_solve(seed, n_assets, window, extra,
                                                             every, idio, read_every):
    # W < n (singular sample covariance) and W > n; the Gram matrix of the Woodbury path is
    # caught up row by row (read every step or every 3) or rebuilt (read every 50)
    r = _factor_panel(seed, window + extra, n_assets, idio)
    m = RollingMoments(window, recompute_every=every).start(r[:window])
    for k in range(window, len(r)):
        m.push(r[k])
        if (k - window) % read_every == 0 or k == len(r) - 1:
            expected = _batch_unconstrained(r[k - window + 1 : k + 1])
            if expected is None:  # no solver's answer means anything (singular S)
                m._gram_matrix()  # but the Gram rows are caught up as a read would
                continue
            for method in ("woodbury", "direct", "auto"):
                assert _rel(m.unconstrained_weights(method), expected) < 1e-10, method
    if expected is not None:
        terms = m.ledoit_wolf_terms()
        assert _rel(m.unconstrained_weights("woodbury", terms=terms),
                    m.unconstrained_weights("direct", terms=terms)) < 1e-10


def test_woodbury_falls_back_without_shrinkage_and_checks_its_arguments():
    r = _panel(2, 80, 1)  # one asset: shrinkage 0, no identity part to invert
    m = RollingMoments(30).start(r[:30])
    assert m.ledoit_wolf_terms()[1] == 0.0
    np.testing.assert_allclose(m.unconstrained_weights("woodbury"), [1.0])
    with pytest.raises(ConfigError, match="method"):
        m.unconstrained_weights("cholesky")
    with pytest.raises(DataError, match="a > 0"):
        shrunk_inverse_ones(np.ones((3, 2)), 0.0, 1.0)
    np.testing.assert_allclose(shrunk_inverse_ones(np.ones((3, 2)), 2.0, 0.0), [0.5, 0.5])


def test_ledoit_wolf_terms_rebuild_the_covariance():
    r = _panel(4, 200, 30)
    m = RollingMoments(20).start(r[:20])
    for k in range(20, 200):
        m.push(r[k])
    sample, shrink, mu = m.ledoit_wolf_terms()
    cov, shrink_b = ledoit_wolf(r[-20:])
    assert abs(shrink - float(shrink_b)) < 1e-12
    assert abs(mu - np.trace(sample) / 30) < 1e-12 * mu
    assert _rel((1 - shrink) * sample + shrink * mu * np.eye(30), cov) < 1e-12


def test_the_cheaper_solve_is_picked_by_the_sizes():
    assert not woodbury_is_cheaper(20, 126)  # the bundled universe: direct solve
    assert not woodbury_is_cheaper(40, 10)  # small n: direct solve whatever the window
    assert woodbury_is_cheaper(500, 126) and woodbury_is_cheaper(200, 60)
    assert not woodbury_is_cheaper(100, 126)
