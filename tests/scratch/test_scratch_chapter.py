"""The chapter's printed numbers: the toy regressor's twenty losses and the summary table."""

import numpy as np
import pytest

from neuralfolio.errors import ConfigError
from neuralfolio.scratch import (
    TOY_X,
    TOY_Y,
    LogisticRegressor,
    Network,
    chapter_summary,
    summary,
    summary_rows,
    toy_logistic,
)

# As printed in the chapter (Python 2 str of a float: 12 significant digits).
PRINTED = [
    "0.822322582088", "0.722897448125", "0.646837651208", "0.584116122241",
    "0.530908161024", "0.48523717872", "0.445747750118", "0.411391164148",
    "0.381326093762", "0.354869998127", "0.331466036109", "0.310657702141",
    "0.292068863232", "0.275387990352", "0.260355695915", "0.246754868981",
    "0.234402844624", "0.22314516463", "0.21285058467", "0.203407060401",
]


def test_toy_losses_match_every_printed_digit():
    losses = toy_logistic(epochs=20, alpha=1.0, seed=1)
    assert [format(loss, ".12g") for loss in losses] == PRINTED


def test_toy_first_forward_pass_matches_the_chapter():
    # The chapter prints A for the initial weights: 0.60841366, 0.45860596, ...
    np.random.seed(1)  # noqa: NPY002
    W = 2 * np.random.random((3, 1)) - 1  # noqa: NPY002
    model = LogisticRegressor.from_weights(W)
    A = model.forward(TOY_X)
    np.testing.assert_allclose(A[:, 0], [0.60841366, 0.45860596, 0.3262757, 0.36375058],
                               atol=5e-9)


def test_toy_update_is_the_chapter_formula():
    np.random.seed(1)  # noqa: NPY002
    W = 2 * np.random.random((3, 1)) - 1  # noqa: NPY002
    model = LogisticRegressor.from_weights(W)
    model.fit(TOY_X, TOY_Y, epochs=1, alpha=1.0)
    A = 1 / (1 + np.exp(-(TOY_X @ W)))
    dz = A - TOY_Y
    np.testing.assert_allclose(model.W, W - TOY_X.T @ dz / 4, rtol=1e-15)
    np.testing.assert_allclose(model.b, -dz.mean(keepdims=True), rtol=1e-15)


def test_summary_counts_match_the_chapter_table():
    net = Network((2, 3, 1), ("tanh", "sigmoid"))
    rows = summary_rows(net)
    assert [r["params"] for r in rows] == [9, 0, 4, 0]
    assert [r["type"] for r in rows] == ["Dense", "Activation", "Dense", "Activation"]
    assert [r["output_shape"] for r in rows] == ["(None, 3)"] * 2 + ["(None, 1)"] * 2
    text = summary(net, input_dim=2)
    for line in ("Total params: 13", "Trainable params: 13", "Non-trainable params: 0",
                 "dense_1 (Dense)", "activation_1 (Activation)", "Layer (type)"):
        assert line in text
    assert chapter_summary() == text


def test_summary_of_a_deeper_network_and_linear_output():
    net = Network((4, 8, 8, 2), ("relu", "relu", "linear"), loss="mse")
    rows = summary_rows(net)
    assert [r["params"] for r in rows] == [40, 0, 72, 0, 18]  # no Activation row for linear
    assert "Total params: 130" in summary(net)


def test_summary_rejects_wrong_input_dim():
    with pytest.raises(ConfigError, match="input_dim 3"):
        summary(Network((2, 3, 1), ("tanh", "sigmoid")), input_dim=3)
