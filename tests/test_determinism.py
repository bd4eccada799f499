"""The same inputs and seeds give the same figures whatever ``n_jobs`` and joblib backend.

Each parallel path is run serially, on two process workers (loky) and on two threads, and
the results must be equal to the last bit: the walk-forward policies and folds, the rolling
labels and the scenario labels.
"""

import os

import numpy as np
import pytest
import torch

from neuralfolio.backtest import walk_forward
from neuralfolio.data import simple_returns
from neuralfolio.features import FeatureSpec
from neuralfolio.nn import NeuralAllocator, TrainConfig
from neuralfolio.optimize import min_variance_labels, rolling_labels, scenario_labels
from neuralfolio.optimize._parallel import chunk_bounds
from neuralfolio.policies import EqualWeight, MinVariancePolicy, NeuralPolicy

WINDOW = 40
PARALLEL = [(2, "loky"), (2, "threading")]
WALK = {"retrain_every": 40, "timed_updates": 2}


def _policies():
    # dropout: training draws from the global generator, which threads would share
    imitation = TrainConfig(hidden=(32, 16), max_epochs=4, patience=3, batch_size=64,
                            dropout=0.1)
    outcome = TrainConfig(hidden=(32, 16), max_epochs=4, patience=3, batch_size=64, dropout=0.1,
                          head="simplex", loss="variance", horizon=5)
    return {
        # fine-tuned from fold to fold: one task per policy
        "network": NeuralPolicy(NeuralAllocator(FeatureSpec("risk", WINDOW), imitation,
                                                augment=150), refit_augment=40,
                                refit_epochs=2),
        "network_outcome": NeuralPolicy(NeuralAllocator(FeatureSpec("risk", WINDOW), outcome),
                                        refit_epochs=2),
        # re-fitted from scratch: its folds are spread over the workers
        "network_fresh": NeuralPolicy(NeuralAllocator(FeatureSpec("risk", WINDOW), imitation),
                                      fine_tune=False),
        "optimizer_daily": MinVariancePolicy(WINDOW, "daily"),
        "optimizer_at_retrain": MinVariancePolicy(WINDOW, "at_fit"),
        "equal_weight": EqualWeight(),
    }


@pytest.fixture(scope="module")
def serial_run(small_prices):
    """The serial run, with this process's PyTorch threads set apart from the
    ``cores // n_jobs`` a joblib process worker starts with (as on a machine with more cores
    than workers)."""
    before = torch.get_num_threads()
    threads = max(2, (os.cpu_count() or 1) // 2 + 1)
    torch.set_num_threads(threads)
    labels = min_variance_labels(small_prices, window=WINDOW).weights
    serial = walk_forward(small_prices, _policies(), labels, test_start=small_prices.index[400],
                          **WALK)
    assert torch.get_num_threads() == threads  # given back after the run
    yield labels, serial
    torch.set_num_threads(before)


@pytest.mark.parametrize(("n_jobs", "backend"), PARALLEL)
def test_walk_forward_is_the_same_for_any_n_jobs_and_backend(small_prices, serial_run, n_jobs,
                                                              backend):
    labels, serial = serial_run
    threads = torch.get_num_threads()
    par = walk_forward(small_prices, _policies(), labels, test_start=small_prices.index[400],
                       n_jobs=n_jobs, backend=backend, **WALK)
    assert torch.get_num_threads() == threads
    gaps = {name: float(np.abs(par.weights[name].to_numpy()
                               - serial.weights[name].to_numpy()).max())
            for name in serial.policies}
    assert not any(gaps.values()), f"largest weight differences from serial: {gaps}"
    for name in serial.policies:
        assert par.weights[name].index.equals(serial.weights[name].index)
    timings = ["update_us", "fit_seconds"]
    np.testing.assert_array_equal(par.summary().drop(columns=timings).to_numpy(),
                                  serial.summary().drop(columns=timings).to_numpy())
    assert par.path_gap == serial.path_gap


def test_walk_forward_leaves_the_policies_passed_in_unfitted(small_prices):
    labels = min_variance_labels(small_prices, window=WINDOW).weights
    pols = {"opt": MinVariancePolicy(WINDOW, "at_fit"),
            "net": NeuralPolicy(NeuralAllocator(FeatureSpec("risk", WINDOW),
                                                TrainConfig(hidden=(8,), max_epochs=1)))}
    walk_forward(small_prices, pols, labels, test_start=small_prices.index[500],
                 retrain_every=50)
    assert not hasattr(pols["opt"], "weights_")
    assert not hasattr(pols["net"].allocator, "network_")


@pytest.mark.parametrize("objective", ["min_variance", "mean_variance"])
def test_rolling_labels_are_the_same_for_any_n_jobs_and_backend(small_prices, objective):
    serial = rolling_labels(small_prices, objective=objective, window=WINDOW).weights
    for n_jobs, backend in [*PARALLEL, (3, "threading")]:
        par = rolling_labels(small_prices, objective=objective, window=WINDOW, n_jobs=n_jobs,
                             backend=backend).weights
        np.testing.assert_array_equal(par.to_numpy(), serial.to_numpy(),
                                      err_msg=f"{n_jobs} {backend}")


def test_scenario_labels_are_the_same_for_any_n_jobs_and_backend(small_prices):
    returns = simple_returns(small_prices).to_numpy()[:400]
    covs, weights = scenario_labels(returns, 300, window=WINDOW, seed=3,
                                    blend_share=0.25, factor_share=0.25)
    for n_jobs, backend in PARALLEL:
        c, w = scenario_labels(returns, 300, window=WINDOW, seed=3, blend_share=0.25,
                               factor_share=0.25, n_jobs=n_jobs, backend=backend)
        np.testing.assert_array_equal(c, covs)
        np.testing.assert_array_equal(w, weights, err_msg=backend)


def test_chunks_do_not_depend_on_n_jobs():
    for n in (0, 1, 127, 128, 129, 1000):
        bounds = chunk_bounds(n, 1)
        assert all(chunk_bounds(n, j) == bounds for j in (2, 4, -1))
        assert [i for a, b in bounds for i in range(a, b)] == list(range(n))


def test_fixed_threads_nests_and_restores():
    from neuralfolio.nn._train import fixed_threads

    before = torch.get_num_threads()
    with fixed_threads():
        inside = torch.get_num_threads()
        with fixed_threads():
            assert torch.get_num_threads() == inside
        assert torch.get_num_threads() == inside
    assert inside == 1 and torch.get_num_threads() == before


def test_cli_backtest_summaries_do_not_depend_on_jobs(tmp_path):
    """The issue's check: `backtest --config X --jobs 1` and `--jobs 2` on gfc agree."""
    import json

    from typer.testing import CliRunner

    from neuralfolio.cli import app

    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'data = "gfc"\nstart = "2006-01-01"\ntest_start = "2008-01-01"\n'
        'test_end = "2008-06-30"\nwindow = 40\noutcome_window = 40\nretrain_every = 42\n'
        'augment = 40\nrefit_augment = 10\n'
        'policies = ["network", "network_outcome", "optimizer_daily", "equal_weight"]\n'
        '[train]\nmax_epochs = 2\nmodel_options = {d_model = 8}\ndropout = 0.1\n'
        '[outcome_train]\nmax_epochs = 2\nmodel_options = {d_model = 8}\n')
    runs = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        result = CliRunner().invoke(app, ["backtest", "--config", str(cfg), "--jobs", str(jobs),
                                          "--no-report", "--out", str(out), "--json"],
                                    catch_exceptions=False)
        summary = json.loads(result.stdout)["policies"]
        for figures in summary.values():  # timings are the only figures allowed to differ
            for key in ("update_us", "fit_seconds"):
                figures.pop(key, None)
        runs.append(summary)
    assert runs[0] == runs[1]
