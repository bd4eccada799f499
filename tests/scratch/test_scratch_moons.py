"""Two moons: hidden size 1 underfits, 3 fits, 500 overfits (the chapter's three pictures)."""

import numpy as np
import pytest

from neuralfolio.errors import ConfigError
from neuralfolio.scratch import moons_data, two_moons

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def reports():
    return {seed: two_moons((1, 3, 500), seed=seed) for seed in SEEDS}


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_three_units_fit_the_moons(reports, seed):
    assert reports[seed][3].test_accuracy >= 0.85


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_one_unit_underfits(reports, seed):
    r = reports[seed]
    assert r[1].train_accuracy <= r[3].train_accuracy - 0.03


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_five_hundred_units_overfit(reports, seed):
    r = reports[seed]
    wide, fit = r[500], r[3]
    assert wide.train_accuracy > fit.train_accuracy
    assert wide.train_accuracy >= 0.97
    assert wide.test_accuracy <= wide.train_accuracy - 0.04
    assert wide.test_accuracy < fit.test_accuracy


@pytest.mark.slow
def test_report_contents(reports):
    r = reports[0]
    assert list(r.fits) == [1, 3, 500]
    fit = r[3]
    (tn, fp), (fn, tp) = fit.confusion
    assert tn + fp + fn + tp == r.settings["n_test"]
    assert fit.test_accuracy == pytest.approx((tn + tp) / r.settings["n_test"])
    assert fit.precision == pytest.approx(tp / (tp + fp))
    assert fit.recall == pytest.approx(tp / (tp + fn))
    assert len(fit.loss) == r.settings["epochs"] and fit.loss[-1] < fit.loss[0]
    assert "network" not in fit.as_dict() and r.as_dict()["settings"]["seed"] == 0


def test_plots_are_written(tmp_path):
    report = two_moons((1, 3), n_train=60, n_test=40, epochs=20, out_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["moons_h1.png", "moons_h3.png", "moons_loss.png"]
    assert report[3].plot == str(tmp_path / "moons_h3.png")
    assert (tmp_path / "moons_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_moons_data_split_is_seeded_and_disjoint():
    a = moons_data(50, 30, 0.3, seed=5)
    b = moons_data(50, 30, 0.3, seed=5)
    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(p, q)
    X_train, y_train, X_test, y_test = a
    assert X_train.shape == (50, 2) and y_train.shape == (50, 1) and X_test.shape == (30, 2)
    assert set(np.unique(y_test)) == {0.0, 1.0}
    assert not np.any(np.all(X_train[:, None, :] == X_test[None, :, :], axis=2))


def test_bad_moons_settings():
    with pytest.raises(ConfigError, match="hidden_sizes"):
        two_moons((0,))
    with pytest.raises(ConfigError, match="n_train"):
        moons_data(n_train=1)
