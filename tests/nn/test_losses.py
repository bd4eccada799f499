import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralfolio.errors import ConfigError
from neuralfolio.nn._losses import (
    KL,
    L1,
    LOSSES,
    MSE,
    CompositeLoss,
    CrossEntropy,
    CVaR,
    Loss,
    MaxDrawdown,
    NegativeSharpe,
    Turnover,
    Variance,
    Volatility,
    parse_loss,
    portfolio_returns,
)
from neuralfolio.risk import max_drawdown as np_max_drawdown
from neuralfolio.risk import sharpe_ratio as np_sharpe_ratio

D = torch.float64


def t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def one_asset(series) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights all in asset 0 and 2-D returns whose first column is ``series``."""
    s = np.asarray(series, dtype=np.float64)
    r = np.stack([s, np.full_like(s, 0.5)], axis=1)  # asset 1 is never held
    w = np.tile([1.0, 0.0], (len(s), 1))
    return t(w), t(r)


def value(loss, *args, **kwargs) -> float:
    return float(loss(*args, **kwargs))


@pytest.fixture(scope="module")
def sample():
    g = np.random.default_rng(0)
    logits = g.normal(size=(8, 4))
    w = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = g.dirichlet(np.ones(4), size=8)
    r2 = g.normal(-0.005, 0.02, size=(8, 4))
    r3 = g.normal(-0.005, 0.02, size=(8, 6, 4))
    return t(w), t(y), t(r2), t(r3)


# ----------------------------------------------------------------------------- imitation
def test_imitation_losses_by_hand():
    w = t([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    y = t([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    assert value(MSE(), w, target=y) == pytest.approx(0.5)  # 0.25 + 0.25 per row
    assert value(L1(), w, target=y) == pytest.approx(1.0)  # 0.5 + 0.5 per row

    w = t([[0.5, 0.25, 0.25], [0.25, 0.75, 0.0]])
    y = t([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    ce = [math.log(2), -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))]
    kl = [math.log(2), 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)]
    assert value(CrossEntropy(), w, target=y) == pytest.approx(np.mean(ce))
    assert value(KL(), w, target=y) == pytest.approx(np.mean(kl))  # 0 log 0 = 0


def test_kl_is_cross_entropy_less_label_entropy(sample):
    w, y, _, _ = sample
    entropy = -(y * y.log()).sum(-1).mean()
    torch.testing.assert_close(KL()(w, target=y), CrossEntropy()(w, target=y) - entropy)
    assert value(KL(), y, target=y) == pytest.approx(0.0, abs=1e-12)


def test_imitation_matches_numpy(sample):
    w, y, _, _ = sample
    wn, yn = w.numpy(), y.numpy()
    assert value(MSE(), w, target=y) == pytest.approx(((wn - yn) ** 2).sum(1).mean())
    assert value(L1(), w, target=y) == pytest.approx(np.abs(wn - yn).sum(1).mean())
    assert value(CrossEntropy(), w, target=y) == pytest.approx(-(yn * np.log(wn)).sum(1).mean())


# ----------------------------------------------------------------------------- outcome
def test_portfolio_returns_shapes(sample):
    w, _, r2, r3 = sample
    np.testing.assert_allclose(portfolio_returns(w, r2).numpy(), (r2.numpy() * w.numpy()).sum(1))
    p3 = portfolio_returns(w, r3)
    assert p3.shape == (8, 6)
    np.testing.assert_allclose(p3.numpy(), np.einsum("bha,ba->bh", r3.numpy(), w.numpy()))


def test_variance_volatility_sharpe_use_ddof_1(sample):
    w, _, r2, _ = sample
    p = (r2.numpy() * w.numpy()).sum(1)
    assert value(Variance(), w, returns=r2) == pytest.approx(np.var(p, ddof=1))
    assert value(Volatility(), w, returns=r2) == pytest.approx(np.std(p, ddof=1))
    sharpe = p.mean() / p.std(ddof=1)
    assert value(NegativeSharpe(), w, returns=r2) == pytest.approx(-sharpe)
    annual = value(NegativeSharpe(annualize=True), w, returns=r2)
    assert annual == pytest.approx(-sharpe * math.sqrt(252))
    assert annual == pytest.approx(-np_sharpe_ratio(p))


def test_variance_of_known_series():
    w, r = one_asset([0.01, -0.02, 0.03, 0.0])
    # mean 0.005; squared deviations sum to 0.0013; ddof=1 divides by 3.
    assert value(Variance(), w, returns=r) == pytest.approx(0.0013 / 3)


def test_outcome_losses_on_3d_returns_average_per_sample_paths(sample):
    w, _, _, r3 = sample
    p = np.einsum("bha,ba->bh", r3.numpy(), w.numpy())
    assert value(Variance(), w, returns=r3) == pytest.approx(np.var(p, axis=1, ddof=1).mean())
    neg_sharpe = -(p.mean(1) / p.std(1, ddof=1)).mean()
    assert value(NegativeSharpe(), w, returns=r3) == pytest.approx(neg_sharpe)
    mdd = np.mean([np_max_drawdown(row) for row in p])
    assert value(MaxDrawdown(), w, returns=r3) == pytest.approx(mdd)
    cvar = np.mean([-np.sort(row)[:3].mean() for row in p])  # k = 0.5 * 6 = 3
    assert value(CVaR(0.5), w, returns=r3) == pytest.approx(cvar)


def test_cvar_95_on_20_values_is_the_worst_loss():
    series = np.linspace(-0.05, 0.045, 20)
    w, r = one_asset(np.random.default_rng(1).permutation(series))
    # k = (1 - 0.95) * 20 = 1: the single worst return, as a positive loss.
    assert value(CVaR(0.95), w, returns=r) == pytest.approx(0.05)
    # k = 0.1 * 20 = 2: mean of the two worst.
    assert value(CVaR(0.9), w, returns=r) == pytest.approx(-(series[0] + series[1]) / 2)
    # k = 0.15 * 20 = 3 (not exactly 3 in floating point).
    assert value(CVaR(0.85), w, returns=r) == pytest.approx(-series[:3].mean())


def test_cvar_fractional_tail_by_hand():
    series = [0.01, -0.04, 0.02, -0.01, 0.03, 0.0, -0.02, 0.05, 0.04, -0.03]
    w, r = one_asset(series)
    # k = 0.15 * 10 = 1.5: the worst in full, the second worst at half weight.
    assert value(CVaR(0.85), w, returns=r) == pytest.approx((0.04 + 0.5 * 0.03) / 1.5)
    assert value(CVaR(0.0), w, returns=r) == pytest.approx(-np.mean(series))
    assert value(CVaR(1.0), w, returns=r) == pytest.approx(0.04)
    assert value(CVaR(0.99), w, returns=r) == pytest.approx(0.04)  # k = 0.1 < 1


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    confidence=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_cvar_matches_skfolio(n, confidence, seed):
    from skfolio.measures import cvar

    series = np.random.default_rng(seed).normal(0, 0.02, n)
    w, r = one_asset(series)
    assert value(CVaR(confidence), w, returns=r) == pytest.approx(
        cvar(series, beta=confidence), rel=1e-9, abs=1e-12
    )


def test_max_drawdown_by_hand():
    w, r = one_asset([0.1, -0.5, 0.2])  # wealth 1.1, 0.55, 0.66
    assert value(MaxDrawdown(), w, returns=r) == pytest.approx(0.5)
    w, r = one_asset([-0.2, 0.1])  # the start is a peak: wealth 0.8 is 20% below it
    assert value(MaxDrawdown(), w, returns=r) == pytest.approx(0.2)
    w, r = one_asset([0.01, 0.02])
    assert value(MaxDrawdown(), w, returns=r) == 0.0


def test_max_drawdown_matches_risk_module():
    series = np.random.default_rng(2).normal(0.0, 0.02, 60)
    w, r = one_asset(series)
    assert value(MaxDrawdown(), w, returns=r) == pytest.approx(np_max_drawdown(series))


def test_batch_order_matters_only_for_drawdown_and_turnover(sample):
    w, _, r2, _ = sample
    perm = torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])
    for loss in (Variance(), Volatility(), NegativeSharpe(), CVaR(0.8)):
        assert value(loss, w[perm], returns=r2[perm]) == pytest.approx(value(loss, w, returns=r2))
    for loss in (MaxDrawdown(), Turnover()):
        assert value(loss, w[perm], returns=r2[perm]) != pytest.approx(value(loss, w, returns=r2))


def test_turnover_of_three_rows():
    w = t([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.25, 0.25]])
    assert value(Turnover(), w) == pytest.approx((1.0 + 0.5) / 2)
    assert value(Turnover(), w[:1]) == 0.0


# ----------------------------------------------------------------------------- composition
def test_composition_is_the_weighted_sum_of_parts(sample):
    w, y, r2, _ = sample
    loss = MSE() + 0.1 * Turnover()
    parts = value(MSE(), w, target=y) + 0.1 * value(Turnover(), w)
    assert value(loss, w, target=y, returns=r2) == pytest.approx(parts)

    loss = 2 * (Variance() + CVaR() / 4) + MaxDrawdown() * 0.5 + sum([L1(), KL()])
    parts = (
        2 * value(Variance(), w, returns=r2) + 0.5 * value(CVaR(), w, returns=r2)
        + 0.5 * value(MaxDrawdown(), w, returns=r2)
        + value(L1(), w, target=y) + value(KL(), w, target=y)
    )
    assert isinstance(loss, CompositeLoss)
    assert len(loss.terms) == 5  # nested sums are flattened
    assert value(loss, w, target=y, returns=r2) == pytest.approx(parts)


def test_repr():
    assert repr(MSE() + 0.1 * Turnover()) == "MSE() + 0.1 * Turnover()"
    assert repr(0.5 * (MSE() + L1())) == "0.5 * MSE() + 0.5 * L1()"
    assert repr(Variance() / 4 + -2 * MaxDrawdown()) == "0.25 * Variance() - 2 * MaxDrawdown()"
    assert repr(CVaR(0.99)) == "CVaR(confidence=0.99)"
    assert repr(CVaR()) == "CVaR()"
    assert repr(NegativeSharpe(annualize=True)) == "NegativeSharpe(annualize=True)"


def test_needs():
    assert MSE().needs == {"target"}
    assert Variance().needs == {"returns"}
    assert Turnover().needs == set()
    assert (MSE() + 0.1 * Turnover()).needs == {"target"}
    assert (KL() + CVaR() + Turnover()).needs == {"target", "returns"}
    for name, cls in LOSSES.items():
        assert cls().needs <= {"target", "returns"}, name


def test_missing_inputs_name_the_loss_and_the_argument(sample):
    w, y, r2, _ = sample
    with pytest.raises(ConfigError, match=r"MSE\(\).*needs `target`"):
        MSE()(w, returns=r2)
    with pytest.raises(ConfigError, match=r"needs `returns` \(for CVaR\(\)\)"):
        (MSE() + 0.1 * CVaR())(w, target=y)
    with pytest.raises(ConfigError, match="needs `returns`"):
        (Variance() + Turnover()).check({"target"})
    (MSE() + Turnover()).check({"target"})  # no error
    Turnover()(w)  # needs nothing


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda w, y, r: MSE()(w[0], target=y[0]), "weights must be .*batch, n_assets"),
        (lambda w, y, r: MSE()(w, target=y[:, :2]), "target has shape"),
        (lambda w, y, r: Variance()(w, returns=r[:3]), "returns has shape"),
        (lambda w, y, r: Variance()(w, returns=r[..., :2]), "returns has shape"),
        (lambda w, y, r: Variance()(w[:1], returns=r[:1]), "at least 2 portfolio returns"),
        (lambda w, y, r: NegativeSharpe()(w, returns=r.unsqueeze(1)), "horizon of at least 2"),
    ],
)
def test_bad_shapes(sample, call, match):
    w, y, r2, _ = sample
    with pytest.raises(ConfigError, match=match):
        call(w, y, r2)


def test_bad_arithmetic_and_parameters():
    with pytest.raises(TypeError):
        MSE() + 1
    with pytest.raises(TypeError):
        MSE() * "2"
    with pytest.raises(TypeError):
        MSE() * torch.tensor(2.0)
    with pytest.raises(ConfigError, match="by zero"):
        MSE() / 0
    with pytest.raises(ConfigError, match="finite"):
        MSE() * float("nan")
    with pytest.raises(ConfigError, match="confidence"):
        CVaR(1.5)
    with pytest.raises(ConfigError, match="annualize"):
        NegativeSharpe(annualize=1)
    with pytest.raises(ConfigError, match="eps"):
        CrossEntropy(eps=-1)


# ----------------------------------------------------------------------------- parsing
def test_registry():
    assert list(LOSSES) == [
        "mse", "l1", "cross_entropy", "kl", "variance", "volatility", "neg_sharpe", "cvar",
        "max_drawdown", "turnover",
    ]
    for name, cls in LOSSES.items():
        assert cls.name == name
        assert parse_loss(name) == cls()
        assert isinstance(parse_loss(name), cls)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mse + 0.1*turnover", MSE() + 0.1 * Turnover()),
        ("variance + 0.5 * max_drawdown", Variance() + 0.5 * MaxDrawdown()),
        ("  2*KL+L1 ", 2 * KL() + L1()),
        ("1e-3 * cvar(confidence=0.99) + neg_sharpe( annualize = true )",
         1e-3 * CVaR(0.99) + NegativeSharpe(annualize=True)),
        ("mse + -0.5*volatility", MSE() + -0.5 * Volatility()),
        ("cross_entropy(eps=1e-9)", CrossEntropy(eps=1e-9)),
    ],
)
def test_parse_loss(spec, expected, sample):
    w, y, r2, _ = sample
    loss = parse_loss(spec)
    assert loss == expected
    assert repr(loss) == repr(expected)
    assert parse_loss(loss.spec) == loss  # round trip through the text form
    assert value(loss, w, target=y, returns=r2) == pytest.approx(
        value(expected, w, target=y, returns=r2)
    )


def test_spec_text():
    assert (MSE() + 0.1 * Turnover()).spec == "mse + 0.1*turnover"
    assert CVaR(0.99).spec == "cvar(confidence=0.99)"
    assert NegativeSharpe(annualize=True).spec == "neg_sharpe(annualize=true)"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("msee", "Unknown loss 'msee'.*mse, l1, cross_entropy"),
        ("mse + ", "expected a loss name, got the end"),
        ("0.1 mse", "expected '\\*'"),
        ("mse * 0.1", "expected '\\+'"),
        ("mse - l1", "expected '\\+'"),
        ("mse; __import__('os')", "Cannot read loss"),
        ("cvar(conf=0.9)", "no parameter 'conf'.*confidence"),
        ("mse(eps=1)", "no parameter 'eps'"),
        ("cvar(confidence=)", "a value for 'confidence'"),
        ("cvar(confidence=0.9", "',' or '\\)'"),
        ("cvar(confidence=2)", "confidence must be"),
        ("", "non-empty"),
    ],
)
def test_parse_loss_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_loss(spec)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("ndim", [2, 3])
def test_gradients_finite_and_nonzero(sample, name, ndim):
    w0, y, r2, r3 = sample
    w = w0.clone().requires_grad_(True)
    loss = LOSSES[name]() if name != "cvar" else CVaR(0.75)
    out = loss(w, target=y, returns=r2 if ndim == 2 else r3)
    assert out.shape == ()
    (grad,) = torch.autograd.grad(out, w)
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradcheck(sample, name):
    w0, y, r2, _ = sample
    w = w0[:6].clone().requires_grad_(True)
    loss = LOSSES[name]()
    assert torch.autograd.gradcheck(lambda x: loss(x, target=y[:6], returns=r2[:6]), (w,))


def test_minimizing_variance_finds_the_minimum_variance_portfolio():
    g = np.random.default_rng(3)
    r = g.normal(0.0, [0.01, 0.02, 0.03], size=(500, 3))
    inv = np.linalg.solve(np.cov(r, rowvar=False), np.ones(3))
    target = inv / inv.sum()
    assert (target > 0).all()

    returns = t(r)
    theta = torch.zeros(3, dtype=D, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.05)
    loss = Variance()
    for _ in range(200):
        opt.zero_grad()
        w = torch.softmax(theta, dim=0).expand(500, 3)
        loss(w, returns=returns).backward()
        opt.step()
    w = torch.softmax(theta, dim=0).detach().numpy()
    assert np.abs(w - target).sum() < 0.02


def test_equality():
    assert MSE() == MSE()
    assert CVaR(0.9) == CVaR(0.9)
    assert CVaR(0.9) != CVaR(0.95)
    assert MSE() != L1()
    assert 1 * MSE() == MSE()
    assert MSE() + 0.1 * Turnover() == MSE() + Turnover() / 10
    assert MSE() + L1() != L1() + MSE()  # the order of terms is kept
    assert len({MSE(), MSE(), CVaR(0.9), CVaR(0.9), MSE() + L1()}) == 3


def test_custom_subclass_composes(sample):
    w, _, r2, _ = sample

    class MeanReturn(Loss):
        needs = frozenset({"returns"})

        def _evaluate(self, weights, target, returns):
            return -portfolio_returns(weights, returns).mean()

    custom = MeanReturn()
    loss = Variance() + 0.5 * custom
    assert loss.needs == {"returns"}
    assert repr(loss) == "Variance() + 0.5 * MeanReturn()"
    expected = value(Variance(), w, returns=r2) - 0.5 * float((r2 * w).sum(-1).mean())
    assert value(loss, w, returns=r2) == pytest.approx(expected)
    assert custom == custom and custom != MeanReturn()
    with pytest.raises(NotImplementedError, match="no text form"):
        _ = loss.spec
    with pytest.raises(NotImplementedError):
        Loss()(w)
