"""Labels follow the head's mandate, and the manifest says what they were."""

import json
import warnings

import numpy as np
import pytest

from neuralfolio.data import synthetic_prices
from neuralfolio.errors import DataWarning
from neuralfolio.features import FeatureSpec
from neuralfolio.nn import NeuralAllocator, TrainConfig, label_constraints
from neuralfolio.optimize import Constraints, rolling_labels


@pytest.mark.parametrize(("head", "options", "expected"), [
    ("softmax", {}, Constraints(0.0, 1.0)),
    ("simplex", {}, Constraints(0.0, 1.0)),
    ("capped", {"max_weight": 0.3}, Constraints(0.0, 0.3)),
    ("long_short", {"gross_leverage": 1.5},
     Constraints(-0.25, 1.25, budget=1.0, max_short=0.25)),
    ("long_short", {"gross_leverage": 2.0, "net": 0.5},
     Constraints(-0.75, 1.25, budget=0.5, max_short=0.75)),
])
def test_label_constraints_match_the_head(head, options, expected):
    assert label_constraints(TrainConfig(head=head, head_options=options), 6) == expected


@pytest.fixture(scope="module")
def prices():
    # one very quiet asset: uncapped minimum-variance labels pile onto it
    p = synthetic_prices(5, 400, seed=3)
    p["A0"] = 100 * np.cumprod(1 + 0.2 * p["A0"].pct_change().fillna(0))
    return p


def test_labels_made_under_the_heads_constraints_respect_its_caps(prices):
    cfg = TrainConfig(head="capped", head_options={"max_weight": 0.3})
    free = rolling_labels(prices, window=40).weights
    capped = rolling_labels(prices, window=40,
                            constraints=label_constraints(cfg, prices.shape[1])).weights
    assert free["A0"].max() > 0.5  # the problem is real here
    assert capped.to_numpy().max() <= 0.3 + 1e-9
    np.testing.assert_allclose(capped.sum(axis=1), 1.0, atol=1e-9)


def test_long_short_labels_meet_the_gross_limit(prices):
    cfg = TrainConfig(head="long_short", head_options={"gross_leverage": 1.3})
    ls = rolling_labels(prices, window=40, constraints=label_constraints(cfg, 5)).weights
    assert (ls.to_numpy() < -1e-4).any()  # it does short
    assert np.abs(ls.to_numpy()).sum(axis=1).max() <= 1.3 + 1e-6
    np.testing.assert_allclose(ls.sum(axis=1), 1.0, atol=1e-9)


def test_labels_outside_the_mandate_are_warned_about(prices):
    cfg = TrainConfig(head="capped", head_options={"max_weight": 0.3}, hidden=(8,),
                      max_epochs=1)
    free = rolling_labels(prices, window=40)
    with pytest.warns(DataWarning, match=r"break the 'capped' head's mandate.*A0 reaches"):
        NeuralAllocator(FeatureSpec("risk", 40), cfg).fit(prices, free)


def test_manifest_records_labels_and_scenarios(prices, tmp_path):
    cfg = TrainConfig(head="capped", head_options={"max_weight": 0.3}, hidden=(8,),
                      max_epochs=1)
    labels = rolling_labels(prices, window=40, constraints=label_constraints(cfg, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # labels within the mandate: no warning
        model = NeuralAllocator(FeatureSpec("risk", 40), cfg, augment=50).fit(prices, labels)
    model.save(tmp_path / "m")
    m = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert m["labels"]["objective"] == "min_variance"
    assert m["labels"]["window"] == 40
    assert m["labels"]["constraints"]["upper"] == 0.3
    # the synthetic scenarios were solved under the same caps
    assert m["labels"]["scenarios"]["constraints"]["upper"] == 0.3
    assert m["labels"]["scenarios"]["n"] == 50
    assert NeuralAllocator.load(tmp_path / "m").labels_ == m["labels"]


def test_scenario_labels_follow_the_head_when_labels_are_a_plain_frame(prices):
    cfg = TrainConfig(head="capped", head_options={"max_weight": 0.3}, hidden=(8,),
                      max_epochs=1)
    frame = rolling_labels(prices, window=40, constraints=label_constraints(cfg, 5)).weights
    model = NeuralAllocator(FeatureSpec("risk", 40), cfg, augment=30).fit(prices, frame)
    assert model.labels_["source"] == "given"
    assert model.labels_["scenarios"]["constraints"]["upper"] == 0.3
