import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neuralfolio.errors import ConfigError
from neuralfolio.nn._heads import (
    HEADS,
    CappedSimplexHead,
    LongShortHead,
    SimplexHead,
    SoftmaxHead,
    make_head,
)

N = 5
CASES = {
    "softmax": lambda: SoftmaxHead(),
    "softmax-cold-cash": lambda: SoftmaxHead(temperature=0.3, cash=True),
    "simplex": lambda: SimplexHead(),
    "simplex-cash": lambda: SimplexHead(cash=True),
    "capped": lambda: CappedSimplexHead(0.3),
    "capped-per-asset": lambda: CappedSimplexHead([0.5, 0.1, 0.2, 0.3, 0.4]),
    "capped-cash": lambda: CappedSimplexHead(0.15, cash=True),
    "long-short": lambda: LongShortHead(),
    "dollar-neutral": lambda: LongShortHead(gross_leverage=2.0, net=0.0),
    "long-only-tilt": lambda: LongShortHead(gross_leverage=1.0, net=1.0),
    "net-short": lambda: LongShortHead(gross_leverage=1.2, net=-0.5),
}


def _check_promises(head, w, atol_sum):
    b = head.bounds(N)
    w = w.detach().double().numpy()
    assert w.shape[-1] == N and np.isfinite(w).all()
    tol = atol_sum if isinstance(head, LongShortHead) else 1e-12  # long-only bounds are exact
    assert (w >= b.lower - tol).all()
    assert (w <= b.upper + tol).all()
    s = w.sum(axis=-1)
    assert (s >= b.total[0] - atol_sum).all() and (s <= b.total[1] + atol_sum).all()
    assert (np.abs(w).sum(axis=-1) <= b.gross + max(atol_sum, 1e-9)).all()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("scale", [0.1, 3.0, 100.0])
def test_heads_keep_their_promises(case, scale):
    head = CASES[case]()
    z = torch.randn(64, head.n_outputs(N), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1)) * scale
    w = head(z)
    assert w.shape == (64, N) and w.dtype == torch.float64
    _check_promises(head, w, atol_sum=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_heads_keep_their_promises_in_float32(case):
    head = CASES[case]()
    z = torch.randn(2, 32, head.n_outputs(N), generator=torch.Generator().manual_seed(2)) * 3
    w = head(z)
    assert w.shape == (2, 32, N) and w.dtype == torch.float32
    _check_promises(head, w, atol_sum=1e-6)
    if isinstance(head, CappedSimplexHead):  # float32 caps are rounded down, never up
        assert (w.double().numpy() <= head.bounds(N).upper).all()


@pytest.mark.parametrize("case", CASES)
def test_config_is_json_and_rebuilds_the_head(case):
    head = CASES[case]()
    config = json.loads(json.dumps(head.config()))
    rebuilt = make_head(head.name, **config)
    assert type(rebuilt) is HEADS[head.name] and rebuilt.config() == head.config()
    z = torch.randn(3, head.n_outputs(N), dtype=torch.float64)
    torch.testing.assert_close(rebuilt(z), head(z))
    assert head.n_outputs(N) == N + config.get("cash", False)


def test_softmax_head_is_tempered_softmax_and_never_zero():
    z = torch.randn(8, 4, dtype=torch.float64) * 5
    torch.testing.assert_close(SoftmaxHead(2.0)(z), torch.softmax(z / 2.0, dim=-1))
    cash = SoftmaxHead(cash=True)(z)
    torch.testing.assert_close(cash, torch.softmax(z, dim=-1)[:, :3])
    assert (SoftmaxHead()(torch.randn(8, 4)) > 0).all()
    assert (cash.sum(dim=1) < 1).all()


def test_simplex_head_known_values_and_exact_zeros():
    z = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.3, -1.0], [0.2, 0.2, 0.2]], dtype=torch.float64)
    expected = torch.tensor([[1.0, 0, 0], [0.6, 0.4, 0], [1 / 3, 1 / 3, 1 / 3]],
                            dtype=torch.float64)
    torch.testing.assert_close(SimplexHead()(z), expected)
    w = SimplexHead()(torch.tensor([[3.0, 2.5, -1.0, -5.0, 0.5]]))
    assert (w == 0).sum() == 3 and w.sum() == pytest.approx(1.0, abs=1e-7)
    # With cash the cash score competes: a dominant cash score leaves nothing invested.
    assert (SimplexHead(cash=True)(torch.tensor([[0.1, 0.2, 9.0]])) == 0).all()


def _capped_reference(z, u):
    """Projection onto {0 <= w <= u, sum w = 1} through the breakpoints of g(tau), in NumPy."""
    if u.sum() <= 1.0 + 1e-12:  # the caps leave one point
        return np.broadcast_to(u, z.shape).copy()
    out = np.empty_like(z)
    for r, zr in enumerate(z):
        # g(tau) = sum clip(zr - tau, 0, u) is piecewise linear and falls from sum u to 0.
        taus = np.sort(np.concatenate([zr, zr - u]))
        vals = np.clip(zr[None, :] - taus[:, None], 0.0, u).sum(axis=1)
        i = np.nonzero(vals >= 1.0)[0].max()  # g(taus[i]) >= 1 > g(taus[i + 1])
        t0, t1 = taus[i], taus[i + 1]
        tau = t0 + (vals[i] - 1.0) * (t1 - t0) / (vals[i] - vals[i + 1])
        out[r] = np.clip(zr - tau, 0.0, u)
    return out


@pytest.mark.parametrize("cap", [0.25, 0.5, [0.6, 0.05, 0.3, 0.0, 0.2, 0.4]])
def test_capped_head_matches_reference_projection(cap):
    rng = np.random.default_rng(3)
    z = rng.normal(scale=2.0, size=(100, 6))
    head = CappedSimplexHead(cap)
    u = head.bounds(6).upper
    w = head(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(w, _capped_reference(z, u), atol=1e-10)
    assert (w == 0).any() and (w == u).any()  # exact zeros and exact caps


def test_capped_head_with_cap_one_is_the_simplex_head():
    z = torch.randn(200, 7, dtype=torch.float64) * 3
    torch.testing.assert_close(CappedSimplexHead(1.0)(z), SimplexHead()(z), rtol=0, atol=1e-12)


def test_capped_head_when_caps_sum_to_exactly_one():
    w = CappedSimplexHead(0.25)(torch.randn(10, 4, dtype=torch.float64))
    assert (w == 0.25).all()


def test_long_short_head_scales_the_deviation_from_equal_weights():
    head = LongShortHead(gross_leverage=1.5, net=1.0)
    z = torch.randn(50, 6, dtype=torch.float64) * 2
    w = head(z)
    c, d = 1.0 / 6, z - z.mean(dim=1, keepdim=True)
    alpha = ((w - c) * d).sum(dim=1) / (d * d).sum(dim=1)
    torch.testing.assert_close(w, c + alpha[:, None] * d, rtol=0, atol=1e-12)
    assert ((alpha > 0) & (alpha <= 1)).all()
    gross = w.abs().sum(dim=1)
    assert ((alpha == 1) | ((gross - 1.5).abs() < 1e-12)).all()
    assert (alpha < 1).any()
    small = torch.randn(5, 6, dtype=torch.float64) * 0.01  # within the limit: untouched
    torch.testing.assert_close(head(small), small - small.mean(dim=1, keepdim=True) + c)


@pytest.mark.parametrize("case", ["softmax-cold-cash", "simplex", "simplex-cash", "capped",
                                  "capped-per-asset", "capped-cash", "long-short",
                                  "net-short"])
def test_gradients_match_finite_differences(case):
    head = CASES[case]()
    z = torch.randn(3, head.n_outputs(N), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(4)) * 2
    w = head(z)
    if isinstance(head, SimplexHead | CappedSimplexHead):  # active sets are non-trivial
        free = (w > 0) & (w < torch.from_numpy(head.bounds(N).upper))
        assert (w == 0).any() and (free.any() or head.cash)
    assert torch.autograd.gradcheck(head, (z.requires_grad_(),))


@settings(max_examples=50, deadline=None)
@given(
    z=arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 10)),
             elements=st.floats(-50, 50, allow_subnormal=False)),
    cap=st.floats(0.0, 1.0),
)
def test_projection_heads_on_random_scores(z, cap):
    n = z.shape[1]
    cap = max(cap, 1.0 / n)  # feasible
    for head in (SimplexHead(), CappedSimplexHead(cap)):
        w = head(torch.from_numpy(z)).numpy()
        b = head.bounds(n)
        assert np.isfinite(w).all() and (w >= 0).all() and (w <= b.upper).all()
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-9)
        np.testing.assert_allclose(w, _capped_reference(z, b.upper), atol=1e-9)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: CappedSimplexHead(0.1).n_outputs(5), r"max_weight=0.1 on 5 assets cannot sum to 1"),
    (lambda: CappedSimplexHead(0.1)(torch.zeros(2, 5)), r"at least 1/5 = 0.2"),
    (lambda: CappedSimplexHead([0.2, 0.3]), r"add up to 0.5 and cannot sum to 1"),
    (lambda: CappedSimplexHead([0.6, 0.6])(torch.zeros(1, 3)), r"2 caps but the head got 3"),
    (lambda: CappedSimplexHead(0.0), r"max_weight must be in \(0, 1\]"),
    (lambda: CappedSimplexHead([0.5, 1.5]), r"max_weight per asset"),
    (lambda: SoftmaxHead(temperature=0.0), r"temperature must be a finite number > 0, got 0"),
    (lambda: SoftmaxHead(temperature=-1.0), r"temperature"),
    (lambda: SoftmaxHead(temperature=float("nan")), r"temperature"),
    (lambda: LongShortHead(gross_leverage=0.5, net=1.0), r"gross_leverage=0.5 is below \|net\|"),
    (lambda: LongShortHead(gross_leverage=1.0, net=-2.0), r"gross_leverage=1.0"),
    (lambda: make_head("sparsemax"), r"Unknown head 'sparsemax'; choose one of softmax, "
                                      r"simplex, capped, long_short"),
    (lambda: make_head("softmax", temp=2.0), r"takes no argument temp.*temperature, cash"),
    (lambda: SimplexHead(cash=True)(torch.zeros(2, 1)), r"n_outputs\(n_assets\)"),
])
def test_bad_configuration_raises_config_error(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_cash_makes_any_positive_cap_feasible():
    head = CappedSimplexHead(0.1, cash=True)
    w = head(torch.randn(20, head.n_outputs(5), dtype=torch.float64) * 3)
    assert (w <= 0.1).all() and (w.sum(dim=1) <= 1 + 1e-12).all()


@pytest.mark.parametrize("head", [SimplexHead(), CappedSimplexHead(0.45)],
                         ids=["simplex", "capped"])
def test_network_with_head_learns_sparse_target(head):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, head.n_outputs(4)), head)
    x = torch.randn(32, 6)
    target = torch.tensor([0.45, 0.35, 0.2, 0.0]).expand(32, 4)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)

    def loss_fn():
        return ((net(x) - target) ** 2).sum(dim=1).mean()

    first = loss_fn().item()
    for _ in range(50):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    last = loss_fn().item()
    assert last < 0.5 * first
    assert (net(x)[:, 3] == 0).float().mean() > 0.5  # the zero is reached exactly
