"""GuardedPolicy: checks, fallbacks and last good weights, stepped like any policy."""

import numpy as np
import pandas as pd
import pytest

from neuralfolio.backtest import walk_forward
from neuralfolio.data import synthetic_prices
from neuralfolio.errors import ConfigError
from neuralfolio.guard import GuardedPolicy, InputRange, NoFallbackError, OutputPromise
from neuralfolio.policies import EqualWeight, InverseVolatility, OptimizerPolicy, _Base

WINDOW = 40


@pytest.fixture(scope="module")
def prices():
    return synthetic_prices(5, 300, seed=3)


class _Faulty(_Base):
    """Inverse volatility, but NaN weights on the rows listed in ``bad`` (by row value)."""

    def __init__(self, bad_rows):
        self.inner = InverseVolatility(20)
        self.lookback = self.inner.lookback
        self.bad = {tuple(r) for r in bad_rows}

    def weights(self, history):
        if tuple(np.asarray(history)[-1]) in self.bad:
            return np.full(np.asarray(history).shape[1], np.nan)
        return self.inner.weights(history)


def test_output_promise_checks_long_only_and_long_short():
    lo = OutputPromise()
    assert lo.check(np.array([0.5, 0.5])) is None
    assert "non-finite" in lo.check(np.array([np.nan, 1.0]))
    assert "min weight" in lo.check(np.array([1.2, -0.2]))
    assert "sum" in lo.check(np.array([0.5, 0.4]))
    ls = OutputPromise.from_head({"name": "long_short", "net": 0.0, "gross_leverage": 2.0})
    assert ls.check(np.array([1.0, -1.0])) is None
    assert "gross" in ls.check(np.array([1.5, -1.5]))
    assert "sum" in ls.check(np.array([1.0, -0.5]))
    assert "non-finite" in ls.check(np.array([np.inf, -np.inf]))
    assert "non-finite" in lo.check(np.array([np.inf, 0.0]))
    assert "non-finite" in lo.check(np.array([-np.inf, 2.0]))
    with pytest.raises(ConfigError, match="gross"):
        OutputPromise("long_short")
    with pytest.raises(ConfigError, match="kind"):
        OutputPromise("levered")


def test_input_range_flags_far_inputs_only():
    rng = InputRange(np.zeros(3), np.ones(3), 4.0)
    assert rng.check(np.array([1.0, -3.9, 0.0])) is None
    assert "max |z| = 5.0" in rng.check(np.array([0.0, 5.0, 0.0]))
    assert "training distribution" in rng.check(np.array([np.nan, 0.0, 0.0]))
    assert rng.check(np.zeros(7)) is None  # inputs of another model: not checked
    with pytest.raises(ConfigError, match="one length"):
        InputRange(np.zeros(3), np.ones(2), 4.0)


def test_a_failed_output_falls_back_to_the_optimizer_started_when_needed(prices):
    values = prices.to_numpy()
    bad = [values[200], values[230]]
    opt = OptimizerPolicy("min_variance", WINDOW)
    guard = GuardedPolicy(_Faulty(bad), fallback=opt)
    assert guard.lookback == WINDOW + 1
    st = guard.stepper(values[:150])
    assert st.decide().source == "policy"
    for t in range(150, 200):
        st.push(values[t])
        assert st.decide().source == "policy"
    assert st._fallback is None  # no fallback stepping until one is needed
    st.push(values[200])
    d = st.decide()
    assert d.fallback and d.source == "fallback" and "non-finite" in d.reason
    np.testing.assert_allclose(d.weights, opt.weights(values[:201]), atol=1e-7)
    for t in range(201, 231):  # from now on the fallback is stepped along
        st.push(values[t])
        d = st.decide()
    assert d.source == "fallback"
    np.testing.assert_allclose(d.weights, opt.weights(values[:231]), atol=1e-7)
    st.push(values[231])
    d = st.decide()
    assert d.source == "policy"
    np.testing.assert_array_equal(st.last_good, d.weights)


def test_suspect_rows_get_the_last_good_weights_and_none_raise_without_fallback(prices):
    values = prices.to_numpy()
    guard = GuardedPolicy(_Faulty([values[100]]))  # no fallback policy
    st = guard.stepper(values[:99])
    with pytest.raises(NoFallbackError, match="price jump"):  # nothing good yet
        st.decide(suspect="price jump (A0 x3)")
    good = np.array(st.decide().weights)
    st.push(values[99])
    d = st.decide(suspect="price jump (A0 x3)")
    assert d.source == "last_good" and d.reason.startswith("price jump")
    np.testing.assert_array_equal(d.weights, good)
    st.push(values[100])  # the policy fails: the last good weights answer
    d = st.decide()
    assert d.source == "last_good" and "non-finite" in d.reason
    with pytest.raises(NoFallbackError, match="no fallback"):
        GuardedPolicy(_Faulty([values[100]])).stepper(values[:101]).decide()


def test_the_alert_hook_sends_decisions_to_the_fallback(prices):
    values = prices.to_numpy()
    raised = []
    guard = GuardedPolicy(EqualWeight(), fallback=OptimizerPolicy("min_variance", WINDOW),
                          alert=lambda: raised[-1] if raised else None)
    st = guard.stepper(values[:100])
    assert st.decide().source == "policy"
    raised.append("amortization gap above its threshold")
    st.push(values[100])
    d = st.decide()
    assert d.source == "fallback" and d.reason == raised[-1]
    assert set(d.stages) >= {"forward", "checks", "fallback"}


def test_a_guarded_rule_backtests_like_the_rule_and_batch_equals_steps(prices):
    labels = pd.DataFrame(0.2, index=prices.index, columns=prices.columns)
    run = walk_forward(prices, {"plain": InverseVolatility(30),
                                "guarded": GuardedPolicy(InverseVolatility(30),
                                                         fallback=EqualWeight())},
                       labels, test_start=prices.index[150], retrain_every=50)
    np.testing.assert_allclose(run.weights["guarded"], run.weights["plain"], atol=1e-12)
    guard = GuardedPolicy(_Faulty([prices.to_numpy()[180]]), fallback=EqualWeight())
    dates = prices.index[160:200]
    batch = guard.weights_batch(prices, dates)
    assert np.allclose(batch.loc[prices.index[180]], 0.2)  # the fallback's 1/N
    st = guard.stepper(prices.to_numpy()[:161])
    stepped = [np.array(st.weights())]
    for row in prices.to_numpy()[161:200]:
        stepped.append(np.array(st.step(row)))
    np.testing.assert_allclose(batch.to_numpy(), np.array(stepped), atol=1e-12)


def test_guarded_policy_refuses_what_is_not_a_policy():
    with pytest.raises(ConfigError, match="must be a policy"):
        GuardedPolicy(EqualWeight(), fallback="optimizer")


class _Raising(_Base):
    """A policy (or fallback) whose decision raises on the rows in ``bad``."""

    lookback = 2

    def __init__(self, bad_rows, error=None):
        self.bad = {tuple(r) for r in bad_rows}
        self.error = error or np.linalg.LinAlgError("Singular matrix")

    def weights(self, history):
        if tuple(np.asarray(history)[-1]) in self.bad:
            raise self.error
        return np.full(np.asarray(history).shape[1], 1.0 / np.asarray(history).shape[1])


def test_a_policy_that_raises_is_a_failed_check_and_a_failing_fallback_is_survived(prices):
    values = prices.to_numpy()
    guard = GuardedPolicy(_Raising([values[100], values[101]]),
                          fallback=_Raising([values[101]], ValueError("solver failed")))
    st = guard.stepper(values[:100])
    assert st.decide().source == "policy"
    st.push(values[100])
    d = st.decide()
    assert d.source == "fallback" and "LinAlgError: Singular matrix" in d.reason
    st.push(values[101])  # both fail: the last good weights answer
    d = st.decide()
    assert d.source == "last_good" and "the fallback failed too" in d.reason
    assert "solver failed" in d.reason
    st.push(values[102])
    assert st.decide().source == "policy"
