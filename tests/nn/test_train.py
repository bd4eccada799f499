"""Training loop: optimizers, schedules, early stopping, penalties, clipping, seeds, devices,
batches, outcome losses, TrainConfig validation and TrainHistory."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neuralfolio.errors import ConfigError, ModelError
from neuralfolio.nn import _train
from neuralfolio.nn._config import TrainConfig
from neuralfolio.nn._losses import parse_loss
from neuralfolio.nn._network import DenseAllocator
from neuralfolio.nn._train import (
    TrainHistory,
    _batches,
    _needs_order,
    resolve_device,
    train_network,
)

N_IN, N_ASSETS, N_TRAIN, N_VAL = 6, 4, 160, 40
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LR = {"adam": 0.02, "rmsprop": 0.01, "sgd": 2.0}


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _data(seed=0, random_labels=False):
    """Inputs and label weights; labels a learnable function of the inputs unless random."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_TRAIN + N_VAL, N_IN))
    if random_labels:
        y = rng.dirichlet(np.ones(N_ASSETS), size=len(x))
    else:
        y = _softmax(2.0 * x @ rng.standard_normal((N_IN, N_ASSETS)))
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def _returns(seed=0, horizon=None):
    """Asset returns with very different volatilities, so that variance can be lowered."""
    rng = np.random.default_rng(seed + 100)
    vol = np.array([0.005, 0.01, 0.02, 0.04])
    shape = (N_TRAIN + N_VAL, N_ASSETS) if horizon is None else (
        N_TRAIN + N_VAL, horizon, N_ASSETS)
    r = rng.standard_normal(shape) * vol
    return r[:N_TRAIN], r[N_TRAIN:]


def _net(seed=0, hidden=(8,)):
    torch.manual_seed(seed)
    return DenseAllocator(N_IN, N_ASSETS, hidden, "tanh")


def _cfg(**kw):
    base = {"hidden": (8,), "batch_size": 32, "max_epochs": 9, "patience": 9, "seed": 0,
            "device": "cpu"}
    return TrainConfig(**{**base, **kw})


class _RawLinear(nn.Module):
    """Unbounded outputs (no head), so that a large step size really diverges."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(N_IN, N_ASSETS)

    def forward(self, x):
        return self.lin(x)


def _val_loss(model, x, y, loss="mse", r=None):
    fn = parse_loss(loss)

    def t(a):
        return None if a is None else torch.tensor(a, dtype=torch.float32)

    with torch.no_grad():
        return float(fn(model.eval()(t(x)), target=t(y), returns=t(r)))


def _matrix_l1(model):
    return sum(float(p.detach().abs().sum()) for p in model.parameters() if p.ndim >= 2)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- optimizers
@pytest.mark.parametrize("schedule", ["constant", "cosine", "step", "plateau"])
@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "sgd"])
def test_every_optimizer_and_schedule_trains(optimizer, schedule):
    x, y, xv, yv = _data()
    model = _net()
    before = _val_loss(model, xv, yv)
    c = _cfg(optimizer=optimizer, lr=LR[optimizer], lr_schedule=schedule)
    h = train_network(model, x, y, xv, yv, c)
    n = len(h.val_loss)
    assert n == c.max_epochs  # patience == max_epochs: never stops early here
    assert len(h.lr) == len(h.train_loss) == n
    assert 0 <= h.best_epoch < n
    kept = h.val_loss[h.best_epoch]
    assert kept < h.val_loss[0]
    assert kept < before
    assert h.loss == "mse" and h.device == "cpu"
    assert h.lr[0] == pytest.approx(c.lr)
    lr = np.array(h.lr)
    if schedule == "constant":
        np.testing.assert_array_equal(lr, c.lr)
    elif schedule == "cosine":
        assert (np.diff(lr) < 0).all()
    elif schedule == "step":
        # A tenfold step down every third of max_epochs (9 // 3 = 3 epochs).
        np.testing.assert_allclose(lr, c.lr * 0.1 ** (np.arange(n) // 3), rtol=1e-6)
    else:
        assert (np.diff(lr) <= 0).all()
    # The model comes back on the CPU, in evaluation mode, with the kept epoch's loss.
    assert not model.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert _val_loss(model, xv, yv) == pytest.approx(kept, rel=1e-5)


def test_plateau_halves_the_lr_when_validation_stalls():
    x, y, xv, yv = _data()
    # A step far below float32 resolution: the parameters, hence the loss, never change.
    c = _cfg(lr=1e-12, lr_schedule="plateau", patience=4, max_epochs=20)
    h = train_network(_net(), x, y, xv, yv, c)
    # Plateau patience is patience // 2 = 2: the lr halves after the third stale epoch.
    assert h.lr == pytest.approx([1e-12] * 4 + [0.5e-12])


# ----------------------------------------------------------------------------- early stopping
def test_early_stopping_when_validation_cannot_improve():
    x, y, xv, yv = _data()
    model = _net()
    start = _state(model)
    h = train_network(model, x, y, xv, yv, _cfg(lr=1e-12, patience=2, max_epochs=30))
    assert len(h.val_loss) == 3 < 30
    assert h.best_epoch == int(np.argmin(h.val_loss)) == 0
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, start[k])


def test_early_stopping_keeps_the_best_epoch_parameters():
    # Random labels: the network overfits its training rows and the validation loss turns up.
    x, y, xv, yv = _data(random_labels=True)
    model = _net(hidden=(32,))
    c = _cfg(hidden=(32,), lr=0.05, patience=2, max_epochs=60, batch_size=16)
    h = train_network(model, x, y, xv, yv, c)
    n = len(h.val_loss)
    assert n < c.max_epochs
    assert h.best_epoch == int(np.argmin(h.val_loss)) == n - 1 - c.patience
    assert h.best_epoch > 0
    # Evaluated afresh, the model has the kept epoch's validation loss, not the last one's.
    assert _val_loss(model, xv, yv) == pytest.approx(h.val_loss[h.best_epoch], rel=1e-5)
    assert h.val_loss[-1] > h.val_loss[h.best_epoch]


def test_kept_validation_loss_includes_the_l1_penalty():
    x, y, xv, yv = _data()
    model = _net()
    h = train_network(model, x, y, xv, yv, _cfg(lr=0.02, l1=1e-3))
    own = _val_loss(model, xv, yv) + 1e-3 * _matrix_l1(model)
    assert own == pytest.approx(h.val_loss[h.best_epoch], rel=1e-5)


# ----------------------------------------------------------------------------- penalties
def test_l1_penalty_shrinks_weight_matrices():
    x, y, xv, yv = _data()
    plain, sparse = _net(), _net()
    assert _matrix_l1(plain) == _matrix_l1(sparse)
    train_network(plain, x, y, xv, yv, _cfg(lr=0.02, l1=0.0))
    train_network(sparse, x, y, xv, yv, _cfg(lr=0.02, l1=1e-2))
    assert _matrix_l1(sparse) < 0.8 * _matrix_l1(plain)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_weight_decay_shrinks_weights(optimizer):
    x, y, xv, yv = _data()
    plain, decayed = _net(), _net()

    def norm(m):
        return sum(float((p.detach() ** 2).sum()) for p in m.parameters())

    lr = LR[optimizer]
    train_network(plain, x, y, xv, yv, _cfg(optimizer=optimizer, lr=lr))
    train_network(decayed, x, y, xv, yv, _cfg(optimizer=optimizer, lr=lr, weight_decay=0.1))
    assert norm(decayed) < 0.9 * norm(plain)


# ----------------------------------------------------------------------------- clipping
def test_clip_grad_keeps_a_huge_step_finite():
    x, y, xv, yv = _data()
    model = _RawLinear()
    c = _cfg(optimizer="sgd", momentum=0.0, lr=1e3, clip_grad=1e-3, max_epochs=10,
             patience=10)
    h = train_network(model, x, y, xv, yv, c)
    assert len(h.val_loss) == 10
    assert np.isfinite(h.train_loss).all() and np.isfinite(h.val_loss).all()
    assert all(torch.isfinite(p).all() for p in model.parameters())


# The error message formats float(loss) of a tensor that requires grad (a torch UserWarning).
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")
def test_divergence_without_clipping_raises_and_restores_determinism():
    x, y, xv, yv = _data()
    c = _cfg(optimizer="sgd", momentum=0.0, lr=1e3, max_epochs=20, patience=20,
             deterministic=True)
    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(ModelError, match="diverged"):
        train_network(_RawLinear(), x, y, xv, yv, c)
    assert not torch.are_deterministic_algorithms_enabled()


def test_nonfinite_validation_in_every_epoch_raises():
    x, y, xv, yv = _data()
    # One batch, one epoch: the single step is taken from a finite loss and overflows.
    c = _cfg(optimizer="sgd", momentum=0.0, lr=1e30, max_epochs=1, batch_size=N_TRAIN)
    with pytest.raises(ModelError, match="diverged"):
        h = train_network(_RawLinear(), x, y, xv, yv, c)
        assert h.best_epoch >= 0, h  # what happens instead: best_epoch -1, val_loss [inf]


# ----------------------------------------------------------------------------- seeds
def test_same_seed_is_reproducible_and_seeds_differ():
    x, y, xv, yv = _data()

    def run(seed):
        model = _net()
        h = train_network(model, x, y, xv, yv, _cfg(lr=0.02, seed=seed, deterministic=True,
                                                     max_epochs=4))
        return h, _state(model)

    assert not torch.are_deterministic_algorithms_enabled()
    h1, s1 = run(3)
    assert not torch.are_deterministic_algorithms_enabled()  # restored
    torch.manual_seed(12345)  # the global generator does not matter without dropout
    h2, s2 = run(3)
    h3, s3 = run(4)
    assert h1.to_dict() == h2.to_dict()
    for k in s1:
        torch.testing.assert_close(s1[k], s2[k], rtol=0, atol=0)
    assert h1.train_loss != h3.train_loss
    assert any(not torch.equal(s1[k], s3[k]) for k in s1)


# ----------------------------------------------------------------------------- devices
def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="auto"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cuda").type == "cuda"
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_gpu_fails_before_training(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    x, y, xv, yv = _data()
    model = _net()
    start = _state(model)
    with pytest.raises(ConfigError, match="auto"):
        train_network(model, x, y, xv, yv, _cfg(device="cuda"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, start[k])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_leaves_the_model_on_the_cpu():
    x, y, xv, yv = _data()
    model = _net()
    h = train_network(model, x, y, xv, yv, _cfg(lr=0.02, device="auto", max_epochs=3))
    assert h.device.startswith("cuda")
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert _val_loss(model, xv, yv) == pytest.approx(h.val_loss[h.best_epoch], rel=1e-4)


# ----------------------------------------------------------------------------- batches
def _all(batches):
    return [b.tolist() for b in batches]


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 300), size=st.integers(2, 64), seed=st.integers(0, 2**31 - 1),
       min_rows=st.sampled_from([1, 2]))
def test_shuffled_batches_cover_every_index_once(n, size, seed, min_rows):
    batches = _all(_batches(n, size, False, torch.Generator().manual_seed(seed), min_rows))
    assert all(len(b) <= size for b in batches)
    seen = sorted(i for b in batches for i in b)
    assert len(seen) == len(set(seen))  # no index twice
    dropped = min_rows == 2 and n % size == 1  # a last batch of one row
    assert len(seen) == n - dropped
    assert set(seen) <= set(range(n))
    assert all(len(b) >= min_rows for b in batches)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 300), size=st.integers(2, 64), seed=st.integers(0, 2**31 - 1),
       min_rows=st.sampled_from([1, 2]))
def test_ordered_batches_are_runs_of_consecutive_indices(n, size, seed, min_rows):
    batches = _all(_batches(n, size, True, torch.Generator().manual_seed(seed), min_rows))
    for b in batches:
        assert b == list(range(b[0], b[0] + len(b)))  # consecutive, increasing
        assert len(b) <= size
        assert len(b) >= min_rows
    seen = sorted(i for b in batches for i in b)
    assert len(seen) == len(set(seen))
    missing = set(range(n)) - set(seen)
    # Only single-row runs are dropped: the first (cut at offset 1) or the last one.
    assert missing <= {0, n - 1}
    assert set(seen) <= set(range(n))
    if min_rows == 1:
        assert not missing
    if n <= size and n >= min_rows:
        assert batches == [list(range(n))]


def test_ordered_batches_visit_runs_in_varying_order():
    gen = torch.Generator().manual_seed(0)
    epochs = [[b[0] for b in _all(_batches(100, 10, True, gen))] for _ in range(5)]
    assert len({tuple(e) for e in epochs}) > 1
    assert any(e != sorted(e) for e in epochs)
    # And the runs are cut at varying offsets.
    assert len({min(e) if min(e) > 0 else sorted(e)[1] for e in epochs}) > 1
    other = [b[0] for b in _all(_batches(100, 10, True, torch.Generator().manual_seed(1)))]
    assert other != epochs[0]
    # Same generator seed, same batches.
    again = [b[0] for b in _all(_batches(100, 10, True, torch.Generator().manual_seed(0)))]
    assert again == epochs[0]


@pytest.mark.parametrize("ordered", [False, True])
def test_batch_size_one_trains_or_is_refused(ordered):
    order = "chronological" if ordered else "shuffle"
    try:
        c = _cfg(lr=0.02, batch_size=1, batch_order=order, max_epochs=1)
    except ConfigError:
        return  # refusing batch_size=1 up front is a fix too
    x, y, xv, yv = _data()
    model = _net()
    start = _state(model)
    h = train_network(model, x[:20], y[:20], xv, yv, c)
    assert h.train_loss[0] > 0
    assert any(not torch.equal(v, start[k]) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- batch order
def test_needs_order():
    r2, r3 = np.zeros((5, 4)), np.zeros((5, 3, 4))
    assert _needs_order(parse_loss("turnover"), None)
    assert _needs_order(parse_loss("turnover"), r3)
    assert _needs_order(parse_loss("mse + 0.1*turnover"), None)
    assert _needs_order(parse_loss("max_drawdown"), r2)
    assert _needs_order(parse_loss("variance + 0.5*max_drawdown"), r2)
    assert not _needs_order(parse_loss("max_drawdown"), r3)
    assert not _needs_order(parse_loss("mse"), None)
    assert not _needs_order(parse_loss("variance"), r2)
    assert not _needs_order(parse_loss("variance + cvar"), r3)


@pytest.mark.parametrize(("loss", "order", "expected"), [
    ("mse + 0.1*turnover", "auto", True),
    ("mse", "auto", False),
    ("mse", "chronological", True),
    ("mse + 0.1*turnover", "shuffle", False),
])
def test_batch_order_reaches_the_batches(monkeypatch, loss, order, expected):
    calls = []

    def spy(n, size, ordered, gen, min_rows=1):
        calls.append(ordered)
        for b in _batches(n, size, ordered, gen, min_rows):
            if ordered:
                assert torch.equal(b, torch.arange(int(b[0]), int(b[0]) + len(b)))
            yield b

    monkeypatch.setattr(_train, "_batches", spy)
    x, y, xv, yv = _data()
    model = _net()
    h = train_network(model, x, y, xv, yv, _cfg(loss=loss, batch_order=order, lr=0.02,
                                                 max_epochs=3))
    assert calls == [expected] * 3
    assert h.loss == parse_loss(loss).spec
    assert np.isfinite(h.val_loss).all()
    assert h.val_loss[h.best_epoch] < h.val_loss[0]


# ----------------------------------------------------------------------------- outcome losses
@pytest.mark.parametrize("horizon", [None, 5])
def test_variance_loss_trains_without_labels(horizon):
    x, _, xv, _ = _data()
    r, rv = _returns(horizon=horizon)
    model = _net()
    before = _val_loss(model, xv, None, "variance", rv)
    h = train_network(model, x, None, xv, None, _cfg(loss="variance", lr=0.05), r_train=r,
                      r_val=rv)
    kept = h.val_loss[h.best_epoch]
    assert kept < h.val_loss[0] and kept < 0.8 * before
    assert _val_loss(model, xv, None, "variance", rv) == pytest.approx(kept, rel=1e-5)
    # The least volatile asset gets most of the weight.
    with torch.no_grad():
        w = model(torch.tensor(xv, dtype=torch.float32)).mean(dim=0)
    assert int(w.argmax()) == 0


def test_mse_without_labels_names_target():
    x, _, xv, _ = _data()
    r, rv = _returns()
    with pytest.raises(ConfigError, match="`target`"):
        train_network(_net(), x, None, xv, None, _cfg(loss="mse"), r_train=r, r_val=rv)


def test_outcome_loss_without_returns_names_returns():
    x, y, xv, yv = _data()
    with pytest.raises(ConfigError, match="`returns`"):
        train_network(_net(), x, y, xv, yv, _cfg(loss="mse + variance"))


def test_drawdown_with_daily_returns_trains_on_runs(monkeypatch):
    calls = []

    def spy(n, size, ordered, gen, min_rows=1):
        calls.append(ordered)
        yield from _batches(n, size, ordered, gen, min_rows)

    monkeypatch.setattr(_train, "_batches", spy)
    x, _, xv, _ = _data()
    r, rv = _returns()
    h = train_network(_net(), x, None, xv, None,
                      _cfg(loss="variance + 0.1*max_drawdown", lr=0.05, max_epochs=3),
                      r_train=r, r_val=rv)
    assert calls == [True] * 3
    assert np.isfinite(h.val_loss).all()


# ----------------------------------------------------------------------------- TrainConfig
@pytest.mark.parametrize(("kw", "match"), [
    ({"model": "mlp"}, r"Unknown model 'mlp'; choose one of dense, lstm"),
    ({"optimizer": "adamw"}, r"Unknown optimizer 'adamw'; choose one of adam, rmsprop, sgd"),
    ({"lr_schedule": "linear"}, r"Unknown lr_schedule 'linear'; choose one of constant"),
    ({"batch_order": "random"}, r"Unknown batch_order 'random'; choose one of auto"),
    ({"device": "tpu"}, r"Unknown device 'tpu'; choose one of auto, cpu, cuda"),
    ({"loss": "hinge"}, r"Unknown loss 'hinge'.*mse"),
    ({"loss": "mse + "}, r"Cannot read loss"),
    ({"loss": "  "}, r"loss must be a text"),
    ({"horizon": 0}, r"horizon must be an integer >= 1"),
    ({"batch_size": 2.5}, r"batch_size must be an integer >= 1"),
    ({"max_epochs": True}, r"max_epochs must be an integer >= 1"),
    ({"patience": 0}, r"patience must be an integer >= 1"),
    ({"l1": -0.1}, r"l1 must be >= 0"),
    ({"weight_decay": -1e-4}, r"weight_decay must be >= 0"),
    ({"clip_grad": float("nan")}, r"clip_grad must be >= 0"),
    ({"momentum": -0.5}, r"momentum must be >= 0"),
    ({"lr": 0.0}, r"lr must be > 0"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
    ({"val_fraction": 0.5}, r"val_fraction must be in \(0, 0.5\)"),
])
def test_train_config_refuses_bad_values(kw, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kw)


def test_train_config_from_dict_refuses_unknown_keys():
    with pytest.raises(ConfigError, match=r"Unknown train setting\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="Invalid train settings"):
        TrainConfig.from_dict({"hidden": 5})


def test_train_config_from_dict_wraps_bad_hidden_widths():
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({"hidden": ["wide"]})


def test_train_config_round_trip():
    c = TrainConfig(hidden=[16, 8], loss="mse + 0.1*turnover", optimizer="rmsprop", lr=3e-3,
                    lr_schedule="cosine", clip_grad=1.0, l1=1e-4, weight_decay=1e-5,
                    head="capped", head_options={"max_weight": 0.5}, batch_order="shuffle",
                    horizon=5, seed=7, deterministic=True, device="cpu")
    assert c.hidden == (16, 8)
    d = c.to_dict()
    assert d["hidden"] == [16, 8]
    assert TrainConfig.from_dict(d) == c
    assert TrainConfig.from_dict(json.loads(json.dumps(d))) == c
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
    assert c.loss_fn() == parse_loss("mse + 0.1*turnover")


# ----------------------------------------------------------------------------- TrainHistory
def _history():
    return TrainHistory(train_loss=[0.5, 0.3, 0.2], val_loss=[0.6, 0.4, 0.45],
                        lr=[1e-3, 1e-3, 5e-4], best_epoch=1, loss="mse", device="cpu")


@pytest.mark.parametrize("negative", [False, True])
def test_history_plot_writes_a_png(tmp_path, negative):
    h = _history()
    if negative:  # e.g. neg_sharpe: a linear axis
        h.train_loss = [-v for v in h.train_loss]
        h.val_loss = [-v for v in h.val_loss]
        h.loss = "neg_sharpe"
    out = h.plot(tmp_path / "nested" / "history.png")
    assert out == tmp_path / "nested" / "history.png"
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_history_plot_of_a_trained_model(tmp_path):
    x, y, xv, yv = _data()
    h = train_network(_net(), x, y, xv, yv, _cfg(lr=0.02, max_epochs=3))
    out = h.plot(str(tmp_path / "h.png"))
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_empty_history_refuses_to_plot(tmp_path):
    with pytest.raises(ModelError, match="empty"):
        TrainHistory().plot(tmp_path / "h.png")
    assert not (tmp_path / "h.png").exists()


def test_history_dict_round_trip():
    h = _history()
    d = h.to_dict()
    assert TrainHistory.from_dict(d) == h
    assert TrainHistory.from_dict(json.loads(json.dumps(d))) == h
    assert TrainHistory.from_dict({**d, "extra": 1, "epochs_run": 3}) == h
    assert TrainHistory.from_dict({}) == TrainHistory()
    assert math.isnan(TrainHistory.from_dict({"val_loss": [float("nan")]}).val_loss[0])


def test_fine_tuning_keeps_the_start_when_no_epoch_beats_it():
    x, y, xv, yv = _data()
    model = _net()
    train_network(model, x, y, xv, yv, _cfg(max_epochs=20))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    # a learning rate that can only make things worse: the start is kept
    h = train_network(model, x, y, xv, yv, _cfg(lr=5.0, max_epochs=3, patience=3),
                      keep_start=True)
    assert h.best_epoch == -1 and h.start_val_loss is not None
    assert min(h.val_loss) > h.start_val_loss
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, start[k])
    # a useful fine-tuning replaces it
    h = train_network(model, x, y, xv, yv, _cfg(max_epochs=30), keep_start=True)
    assert h.best_epoch >= 0 and min(h.val_loss) < h.start_val_loss
