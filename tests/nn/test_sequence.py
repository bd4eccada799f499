import json

import numpy as np
import pytest
import torch

from neuralfolio.errors import ConfigError
from neuralfolio.nn._heads import make_head
from neuralfolio.nn._sequence import RecurrentAllocator, TCNAllocator

N, W, B, H = 4, 10, 16, 8  # assets, window, batch, hidden width
CELLS = ["lstm", "gru", "rnn"]
FAMILIES = [*CELLS, "tcn"]
HEADS = {
    "softmax": {},
    "simplex": {},
    "capped": {"max_weight": 0.4},
    "long_short": {"gross_leverage": 1.5},
}


def _model(family, head=None, **kw):
    if family == "tcn":
        kw.setdefault("channels", (H, H))
        return TCNAllocator(W * N, N, W, head=head, **kw)
    kw.setdefault("hidden_size", H)
    return RecurrentAllocator(W * N, N, W, head=head, cell=family, **kw)


def _inputs(seed=0, batch=B):
    return torch.randn(batch, W * N, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("head_name", HEADS)
@pytest.mark.parametrize("family", FAMILIES)
def test_weights_keep_the_head_bounds(family, head_name):
    torch.manual_seed(0)
    head = make_head(head_name, **HEADS[head_name])
    model = _model(family, head)
    w = model(_inputs() * 3.0)
    assert w.shape == (B, N)
    w = w.detach().double().numpy()
    b = head.bounds(N)
    assert np.isfinite(w).all()
    assert (w >= b.lower - 1e-6).all() and (w <= b.upper + 1e-6).all()
    s = w.sum(axis=-1)
    assert (s >= b.total[0] - 1e-6).all() and (s <= b.total[1] + 1e-6).all()
    assert (np.abs(w).sum(axis=-1) <= b.gross + 1e-6).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_default_head_is_softmax_and_dropout_runs_in_training(family):
    torch.manual_seed(0)
    kw = {"dropout": 0.3} if family == "tcn" else {"dropout": 0.3, "num_layers": 2}
    model = _model(family, **kw).train()
    assert model.head.name == "softmax"
    w = model(_inputs())
    assert w.shape == (B, N) and torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B))
    model.eval()
    x = _inputs(1)
    assert torch.equal(model(x), model(x))  # no dropout in eval mode


@pytest.mark.parametrize("family", FAMILIES)
def test_any_leading_shape(family):
    model = _model(family).eval()
    x = _inputs(batch=6)
    w = model(x)
    torch.testing.assert_close(model(x.reshape(2, 3, W * N)), w.reshape(2, 3, N))
    torch.testing.assert_close(model(x[0]), w[0])


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_adam_steps_reduce_the_loss(family):
    torch.manual_seed(0)
    model = _model(family)
    x = _inputs()
    target = torch.distributions.Dirichlet(torch.ones(N)).sample()  # fixed simplex point
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_fn():
        return torch.mean((model(x) - target) ** 2)

    with torch.no_grad():
        initial = loss_fn().item()
    for _ in range(50):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = loss_fn().item()
    assert final < 0.1 * initial


@pytest.mark.parametrize("family", FAMILIES)
def test_the_last_day_matters(family):
    torch.manual_seed(0)
    model = _model(family).eval()
    x = _inputs()
    x2 = x.clone().view(B, W, N)
    x2[:, -1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x2.view(B, W * N)), atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_the_recurrent_networks_see_the_first_day(cell):
    torch.manual_seed(0)
    model = _model(cell).eval()
    x = _inputs()
    x2 = x.clone().view(B, W, N)
    x2[:, 0] += 3.0
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x2.view(B, W * N)), atol=1e-7)


@pytest.mark.parametrize("t", [0, 3, W - 2])
def test_tcn_features_are_causal(t):
    torch.manual_seed(0)
    model = _model("tcn", kernel_size=3).eval()
    x = _inputs()
    x2 = x.clone().view(B, W, N)
    x2[:, t + 1:] += torch.randn(B, W - t - 1, N)
    with torch.no_grad():
        f, f2 = model.features(x), model.features(x2.view(B, W * N))
    assert f.shape == (B, H, W)
    torch.testing.assert_close(f2[:, :, :t + 1], f[:, :, :t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(f2[:, :, t + 1:], f[:, :, t + 1:], atol=1e-4)


def test_tcn_receptive_field():
    torch.manual_seed(0)
    model = _model("tcn", channels=(6, 6), kernel_size=2).eval()
    rf = model.receptive_field
    assert rf == 1 + 2 * 1 * (1 + 2) == 7 < W
    x = _inputs()
    with torch.no_grad():
        base = model(x)
        for day, seen in [(W - rf - 1, False), (W - rf, True)]:
            x2 = x.clone().view(B, W, N)
            x2[:, day] += 3.0
            moved = not torch.equal(model(x2.view(B, W * N)), base)
            assert moved == seen, f"day {day}"
    assert TCNAllocator(W * N, N, W, channels=(8, 8, 8), kernel_size=3).receptive_field == 29


@pytest.mark.parametrize("family", FAMILIES)
def test_config_round_trip(family):
    torch.manual_seed(0)
    kw = ({"channels": [5, 7], "kernel_size": 2, "dropout": 0.1} if family == "tcn"
          else {"hidden_size": 6, "num_layers": 2, "dropout": 0.1})
    head = make_head("capped", max_weight=0.4)
    model = _model(family, head, **kw).eval()
    config = json.loads(json.dumps(model.config()))
    assert config == model.config()
    assert "head" not in config
    cls = type(model)
    rebuilt = cls(**config, head=make_head(head.name, **head.config()))
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    x = _inputs()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    assert rebuilt.config() == model.config()


def test_class_attributes():
    for cls in (RecurrentAllocator, TCNAllocator):
        assert cls.asset_agnostic is False and cls.scale_inputs is True


@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_n_inputs(family):
    cls = TCNAllocator if family == "tcn" else RecurrentAllocator
    with pytest.raises(ConfigError, match=r"window \* n_assets = 10 \* 4 = 40.*kind 'returns'"):
        cls(39, N, W)
    with pytest.raises(ConfigError, match="or window=12"):
        cls(48, N, W)


@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_input_width_at_forward(family):
    model = _model(family)
    with pytest.raises(ConfigError, match=r"expects inputs of shape \(batch, 40\).*got \(16, 36\)"):
        model(torch.zeros(B, 36))


def test_unknown_cell():
    match = "Unknown cell 'transformer'; choose one of lstm, gru, rnn"
    with pytest.raises(ConfigError, match=match):
        RecurrentAllocator(W * N, N, W, cell="transformer")


@pytest.mark.parametrize("dropout", [-0.1, 1.0, float("nan"), "x"])
@pytest.mark.parametrize("family", FAMILIES)
def test_bad_dropout(family, dropout):
    with pytest.raises(ConfigError, match=r"dropout must be a number in \[0, 1\)"):
        _model(family, dropout=dropout)


@pytest.mark.parametrize(("family", "kw", "match"), [
    ("lstm", {"hidden_size": 0}, "hidden_size must be an integer >= 1, got 0"),
    ("gru", {"num_layers": 1.5}, "num_layers must be an integer >= 1"),
    ("tcn", {"kernel_size": 0}, "kernel_size must be an integer >= 1"),
    ("tcn", {"channels": ()}, "channels must be a non-empty sequence"),
    ("tcn", {"channels": 32}, r"for example \(32, 32\)"),
    ("tcn", {"channels": (8, 0)}, r"channels\[1\] must be an integer >= 1"),
])
def test_bad_sizes(family, kw, match):
    with pytest.raises(ConfigError, match=match):
        _model(family, **kw)


def test_bad_window_and_head():
    with pytest.raises(ConfigError, match="window must be an integer >= 1"):
        RecurrentAllocator(W * N, N, 0)
    with pytest.raises(ConfigError, match="cannot sum to 1"):
        TCNAllocator(W * N, N, W, head=make_head("capped", max_weight=0.2))
    with pytest.raises(ConfigError, match="head must be an AllocationHead"):
        RecurrentAllocator(W * N, N, W, head="softmax")
