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
    assert abs(shrink - float(shrink_b)) <= 1e-10 * max(float(shrink_b), 1e-3)
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
