"""A run's labels and optimizers follow its imitation network's mandate."""

import numpy as np

from neuralfolio.config import RunConfig
from neuralfolio.data import synthetic_prices
from neuralfolio.pipeline import build_policies, run_labels


def _config(**train):
    return RunConfig(window=40, train={"head": "capped", "head_options": {"max_weight": 0.3},
                                       **train})


def test_capped_run_has_capped_labels_and_optimizers_and_a_long_only_course_network():
    prices = synthetic_prices(5, 300, seed=2)
    cfg = _config()
    labels = run_labels(cfg, prices)
    assert labels.params["constraints"]["upper"] == 0.3
    assert labels.weights.to_numpy().max() <= 0.3 + 1e-9
    policies = build_policies(cfg, prices=prices)
    for name in ("optimizer_daily", "optimizer_at_retrain"):
        assert policies[name].constraints.upper == 0.3
    own = policies["network_prices"].labels  # softmax head: the uncapped simplex
    assert own.params["constraints"]["upper"] == 1.0
    assert policies["network"].labels is None  # it learns from the run's (capped) labels


def test_default_run_needs_no_second_label_set():
    prices = synthetic_prices(5, 300, seed=2)
    policies = build_policies(RunConfig(window=40), prices=prices)
    assert policies["network_prices"].labels is None
    assert policies["optimizer_daily"].constraints.upper == 1.0
    assert np.isclose(run_labels(RunConfig(window=40), prices).weights.sum(axis=1), 1).all()
