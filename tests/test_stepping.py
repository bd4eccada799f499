"""Every policy stepped one price row at a time decides as it does from scratch."""

import numpy as np
import pytest
from skfolio.optimization import HierarchicalRiskParity

from neuralfolio.errors import DataError
from neuralfolio.features import FeatureSpec
from neuralfolio.nn import NeuralAllocator, TrainConfig
from neuralfolio.optimize import OBJECTIVES, min_variance_labels
from neuralfolio.policies import (
    BuyAndHold,
    EqualWeight,
    InverseVolatility,
    MinVariancePolicy,
    NeuralPolicy,
    OptimizerPolicy,
    RuntimePolicy,
    SkfolioPolicy,
    WindowStepper,
    stepper_for,
)

START, STEPS = 130, 120


def _walk(policy, values, start=START, steps=STEPS):
    """Stepped weights and from-scratch weights for rows start .. start + steps."""
    st = policy.stepper(values[: start + 1])
    stepped, scratch = [st.weights().copy()], [policy.weights(values[: start + 1])]
    for row in range(start + 1, start + steps + 1):
        stepped.append(st.step(values[row]).copy())
        scratch.append(policy.weights(values[row + 1 - policy.lookback : row + 1]))
    return np.array(stepped), np.array(scratch)


RULES = {
    "equal_weight": (EqualWeight, 0.0),
    "buy_and_hold": (BuyAndHold, 0.0),
    "inverse_volatility": (lambda: InverseVolatility(40), 1e-12),
    "min_variance": (lambda: MinVariancePolicy(60), 1e-7),
    "min_variance_sample": (lambda: OptimizerPolicy("min_variance", 60, cov="sample"), 1e-7),
    "hrp": (lambda: SkfolioPolicy(HierarchicalRiskParity(), window=40), 1e-10),
}


@pytest.mark.parametrize("name", list(RULES))
def test_rules_stepped_equal_from_scratch(small_prices, name):
    make, tol = RULES[name]
    stepped, scratch = _walk(make(), small_prices.to_numpy())
    np.testing.assert_allclose(stepped, scratch, atol=tol, rtol=0)


@pytest.mark.parametrize("objective", [o for o in OBJECTIVES if o != "min_variance"])
def test_every_objective_steps(small_prices, objective):
    policy = OptimizerPolicy(objective, window=40)
    stepped, scratch = _walk(policy, small_prices.to_numpy(), steps=8)
    np.testing.assert_allclose(stepped, scratch, atol=1e-5)


def test_at_fit_stepper_holds_the_fit_weights(small_prices):
    policy = OptimizerPolicy("min_variance", 40, resolve="at_fit").fit(small_prices.iloc[:200])
    stepped, _ = _walk(policy, small_prices.to_numpy(), start=200, steps=5)
    assert (stepped == policy.weights_).all()


def test_optimizer_stepper_matches_the_batch_path(small_prices):
    policy = MinVariancePolicy(60)
    dates = small_prices.index[START : START + STEPS + 1]
    batch = policy.weights_batch(small_prices.loc[: dates[-1]], dates).to_numpy()
    stepped, _ = _walk(policy, small_prices.to_numpy())
    np.testing.assert_allclose(stepped, batch, atol=1e-7)


@pytest.fixture(scope="module")
def networks(small_prices):
    labels = min_variance_labels(small_prices.iloc[:300], window=60).weights
    out = {}
    for name, cfg in {"attention": {"model": "attention", "model_options": {"d_model": 8}},
                      "dense": {"hidden": (16,)},
                      "lstm": {"model": "lstm", "model_options": {"hidden_size": 4}}}.items():
        spec = "returns" if name == "lstm" else "risk"
        alloc = NeuralAllocator(FeatureSpec(spec, window=60),
                                TrainConfig(**cfg, head="simplex", max_epochs=1, seed=0))
        out[name] = alloc.fit(small_prices.iloc[:300], labels)
    return out


@pytest.mark.parametrize("name", ["attention", "dense", "lstm"])
def test_networks_stepped_equal_from_scratch_and_batch(small_prices, networks, name):
    policy = NeuralPolicy(networks[name])
    stepped, scratch = _walk(policy, small_prices.to_numpy(), start=300, steps=150)
    # the stepped inputs come from rolling moments, the scratch ones from a fresh estimate
    np.testing.assert_allclose(stepped, scratch, atol=1e-6 if name == "lstm" else 1e-10)
    dates = small_prices.index[300:451]
    batch = policy.weights_batch(small_prices.loc[: dates[-1]], dates).to_numpy()
    np.testing.assert_allclose(stepped, batch, atol=1e-5)  # the batch runs in float32


@pytest.mark.parametrize("name", ["attention", "dense"])
def test_runtime_policy_steps_like_the_neural_policy(small_prices, networks, name):
    values = small_prices.to_numpy()
    neural, _ = _walk(NeuralPolicy(networks[name]), values, start=300, steps=50)
    runtime, scratch = _walk(RuntimePolicy(networks[name].to_numpy_runtime()), values,
                             start=300, steps=50)
    np.testing.assert_array_equal(neural, runtime)  # one decision path: the same code
    np.testing.assert_allclose(runtime, scratch, atol=1e-10)


def test_a_bad_row_is_refused_and_the_state_is_kept(small_prices):
    values = small_prices.to_numpy()
    st = MinVariancePolicy(60).stepper(values[:START + 1])
    before = st.weights().copy()
    for bad in ([1.0, np.nan, 1.0, 1.0], [1.0, -2.0, 1.0, 1.0], [1.0, 1.0]):
        with pytest.raises(DataError, match="price"):
            st.step(np.array(bad))
    np.testing.assert_array_equal(st.weights(), before)
    assert st.rows == 0
    np.testing.assert_allclose(st.step(values[START + 1]),
                               MinVariancePolicy(60).weights(values[: START + 2]), atol=1e-7)
    with pytest.raises(DataError, match="shape"):
        MinVariancePolicy(60).stepper(values[:30])


def test_any_object_with_weights_can_be_stepped(small_prices):
    class Momentum:
        lookback, needs_labels = 21, False

        def weights(self, history):
            r = history[-1] / history[0]
            return r / r.sum()

    values = small_prices.to_numpy()
    st = stepper_for(Momentum(), values[:50])
    assert isinstance(st, WindowStepper)
    np.testing.assert_allclose(st.step(values[50]), Momentum().weights(values[30:51]))
