"""Generated price windows of every awkward kind (constant, tiny, huge, jumping, repeated
prices): the service answers each with finite weights within the head's bounds or a 4xx
that says why, never a 5xx."""

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuralfolio.serve import create_app
from neuralfolio.serve.engine import Engine, InputError, ServiceConfig

N_ASSETS = 4
KINDS = ("walk", "constant_asset", "all_constant", "tiny", "huge", "jumps", "repeated_rows",
         "near_constant", "mixed_scales", "trend")


def price_window(kind: str, seed: int, n_rows: int) -> np.ndarray:
    """A valid-shape (n_rows, N_ASSETS) window of positive prices of the given kind."""
    rng = np.random.default_rng(seed)
    vol = rng.choice([1e-6, 1e-3, 0.01, 0.03, 0.2])
    r = rng.normal(0, vol, (n_rows, N_ASSETS))
    level = 100.0
    if kind == "tiny":
        level = 10.0 ** rng.uniform(-12, -6)
    elif kind == "huge":
        level = 10.0 ** rng.uniform(6, 12)
    elif kind == "mixed_scales":
        level = 10.0 ** rng.uniform(-8, 8, N_ASSETS)
    elif kind == "trend":
        r += rng.choice([-0.05, 0.05])
    if kind == "jumps":
        for _ in range(rng.integers(1, 4)):
            r[rng.integers(1, n_rows), rng.integers(N_ASSETS)] += rng.choice(
                [-3.0, -0.7, 0.7, 3.0])
    prices = level * np.exp(np.cumsum(r, axis=0))
    if kind == "constant_asset":
        cols = rng.choice(N_ASSETS, rng.integers(1, N_ASSETS), replace=False)
        prices[:, cols] = prices[-1, cols]
    elif kind == "all_constant":
        prices[:] = prices[-1]
    elif kind == "repeated_rows":
        keep = rng.random(n_rows) < 0.3
        for t in range(1, n_rows):
            if not keep[t]:
                prices[t] = prices[t - 1]
    elif kind == "near_constant":
        prices = prices[-1] * (1 + rng.normal(0, 1e-13, prices.shape))
    return np.clip(prices, 1e-300, 1e300)


windows = st.builds(lambda k, s, n: (k, s, n), st.sampled_from(KINDS),
                    st.integers(0, 2**32 - 1), st.integers(31, 90))


def _check(answer, assets):
    w = np.array([answer.weights[a] for a in assets])
    assert np.isfinite(w).all()
    assert w.min() >= -1e-6 and abs(w.sum() - 1) <= 1e-6  # the simplex head's promise


@pytest.mark.parametrize("mode", ["reject", "flag"])
def test_generated_windows_never_give_a_server_error(registry_copy, mode):
    engine = Engine(ServiceConfig(registry=registry_copy, jump_mode=mode, gap_every=0))
    assets = list(engine.active.assets)
    seen: dict[str, int] = {}
    try:
        @settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(windows)
        def check(case):
            kind, seed, n = case
            prices = price_window(kind, seed, n)
            try:
                answer = engine.weights(assets, prices.tolist())
            except InputError as exc:
                assert exc.status < 500, (kind, seed, n, exc.status, exc.message)
                seen[f"{kind}:{exc.status}"] = seen.get(f"{kind}:{exc.status}", 0) + 1
                return
            _check(answer, assets)
            seen[f"{kind}:200"] = seen.get(f"{kind}:200", 0) + 1

        check()
    finally:
        engine.close()
    assert sum(seen.values()) == 1000
    # every kind was tried, and the ordinary ones are answered
    assert {k.split(":")[0] for k in seen} == set(KINDS)
    assert seen.get("walk:200", 0) > 0 and seen.get("constant_asset:200", 0) > 0


def test_generated_windows_over_http(registry_copy):
    config = ServiceConfig(registry=registry_copy, jump_mode="flag", gap_every=0)
    with TestClient(create_app(config)) as client:
        assets = client.get("/v1/models").json()["active"]["assets"]
        statuses = {}
        for i in range(150):
            kind = KINDS[i % len(KINDS)]
            prices = price_window(kind, i, 31 + i % 40)
            r = client.post("/v1/weights", json={"assets": assets,
                                                 "prices": prices.tolist()})
            assert r.status_code < 500, (kind, i, r.text)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                w = np.array(list(r.json()["weights"].values()))
                assert np.isfinite(w).all() and abs(w.sum() - 1) <= 1e-6
        assert statuses.get(200, 0) > 75
