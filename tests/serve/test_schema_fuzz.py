"""Every answer of the service is one its OpenAPI document promises: schemathesis fuzzes each
documented route (valid and invalid requests, derived from the document itself) and checks
that no answer is a server error (no 5xx but the documented 503), that its status and
content type are documented and that its body matches the documented schema of that
status.

Two services are fuzzed: one serving the conftest's trained network (fixed assets A0..A3)
and one serving an asset-agnostic rule (equal weights), where arbitrary asset names and
short windows are decisions, so generated bodies reach the engine's decision path. Both hold
a few portfolios, the path parameters are drawn partly from their ids and from the
registry's model names (so ticks, deletions and activations act on real state), the admin
token is sent, and the services hold at most a few portfolios (429 is reachable).

The budget is small by default (``FUZZ_EXAMPLES`` examples per route and generation phase);
a long run sets ``NEURALFOLIO_FUZZ_EXAMPLES``, e.g. 2000 (about 24,500 requests, 8 minutes
on 2 cores)::

    NEURALFOLIO_FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/serve/test_schema_fuzz.py -q -s

and prints the requests sent by route and status (``-s``).
"""

import collections
import contextlib
import os

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from neuralfolio.serve import InputError, ModelRegistry, ServiceConfig, create_app

FUZZ_EXAMPLES = int(os.environ.get("NEURALFOLIO_FUZZ_EXAMPLES", "40"))
TOKEN = "fuzz-token"
ASSETS = ["A0", "A1", "A2", "A3"]
PIDS = ["p1", "p2", "p3"]
MODEL_NAMES = ["minvar", "eq"]


@schemathesis.check
def no_server_error(ctx, response, case):
    """No 5xx but the documented 503 (no weights can be given or recorded, with a JSON
    ``detail``): schemathesis's own ``not_a_server_error`` takes every 5xx for a crash."""
    if response.status_code >= 500 and response.status_code != 503:
        raise AssertionError(f"server error {response.status_code}: {response.text[:2000]}")


CHECKS = [no_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
SEEN: collections.Counter = collections.Counter()
"""(service, route, status) -> requests, over the module."""


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    if not SEEN:
        return
    total = sum(SEEN.values())
    statuses = collections.Counter()
    for (_, _, status), n in SEEN.items():
        statuses[status] += n
    lines = [f"schemathesis: {total} requests; by status: {dict(sorted(statuses.items()))}"]
    for (service, route, status), n in sorted(SEEN.items()):
        lines.append(f"  {service:8} {route:40} {status}: {n}")
    print("\n" + "\n".join(lines))


@pytest.fixture(params=["network", "rule"])
def api_schema(request, registry_copy, market):
    if not hasattr(request.node, "_nodeid"):  # schemathesis 4.32 reads pytest < 9.2's name
        request.node._nodeid = request.node.nodeid
    reg = ModelRegistry(registry_copy)
    reg.register_rule({"rule": "equal_weight"}, "eq")  # eq:1, asset-agnostic
    if request.param == "rule":
        reg.activate("eq", 1)
    config = ServiceConfig(registry=registry_copy, token=TOKEN, max_portfolios=8,
                           max_body_bytes=256 * 1024)
    app = create_app(config)
    engine = app.state.engine
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    rows = np.asarray(market.iloc[240:300]).tolist()

    def seed() -> None:
        """The portfolios PIDS, created again after a generated DELETE took them."""
        for pid in PIDS:
            if pid not in engine.portfolios:
                with contextlib.suppress(InputError):  # e.g. 429: full of generated ones
                    engine.create_portfolio(ASSETS, rows, None, pid)

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        """Half the path parameters name real portfolios and models."""
        params = dict(path_parameters or {})
        if "pid" in params:
            return st.sampled_from([*PIDS, params["pid"]]).map(
                lambda pid: {**params, "pid": pid})
        if "name" in params:
            return st.sampled_from([*MODEL_NAMES, params["name"]]).map(
                lambda name: {**params, "name": name})
        return st.just(params)

    history = engine.active.history_needed
    assets = st.permutations(ASSETS) if request.param == "network" else st.lists(
        st.text(min_size=1, max_size=6), min_size=2, max_size=5, unique=True)
    shaped = {"/v1/weights": _windows(assets, history),
              "/v1/portfolios": _windows(assets, history).flatmap(_portfolio),
              "/v1/portfolios/{pid}/ticks": _ticks(np.asarray(market.iloc[299]))}

    @schema.hook
    def flatmap_body(context, body):
        """Half the bodies of the decision routes are well-shaped (the right assets, rows
        of their width, realistic or extreme prices): they reach the engine."""
        strategy = shaped.get(context.operation.path)
        return st.just(body) if strategy is None else st.one_of(st.just(body), strategy)

    schema.service, schema.seed = request.param, seed
    try:
        yield schema
    finally:
        shutdown_lifespans()  # the app's lifespan: the engine's close()
        engine.close()


PRICE = st.one_of(st.floats(1.0, 1000.0), st.floats(1e-13, 1e13),
                  st.sampled_from([1e-12, 1e12, 100.0, 5e-324, 1.7e308]))
"""A price: ordinary, anywhere in (and a little beyond) the service's range, or extreme."""


def _walk(n_assets: int, rows: int) -> st.SearchStrategy:
    """Price rows of a random walk (daily moves of a few percent, now and then a jump)."""
    step = st.one_of(st.floats(-0.05, 0.05), st.sampled_from([-3.0, 2.0, 0.0]))
    return st.tuples(st.lists(st.floats(1.0, 500.0), min_size=n_assets, max_size=n_assets),
                     st.lists(st.lists(step, min_size=n_assets, max_size=n_assets),
                              min_size=rows - 1, max_size=rows - 1)).map(
        lambda t: (np.asarray(t[0]) * np.exp(np.cumsum(
            np.vstack([np.zeros(n_assets), *t[1]]), axis=0))).tolist())


def _rows(n_assets: int, history: int) -> st.SearchStrategy:
    rows = st.integers(max(history - 2, 1), history + 3)
    return st.one_of(
        rows.flatmap(lambda k: _walk(n_assets, k)),
        st.lists(st.lists(PRICE, min_size=n_assets, max_size=n_assets),
                 min_size=max(history - 2, 1), max_size=history + 3),
        rows.flatmap(lambda k: st.just([[100.0] * n_assets] * k)))  # a halted market


def _windows(assets: st.SearchStrategy, history: int) -> st.SearchStrategy:
    def body(names: list[str]) -> st.SearchStrategy:
        return st.fixed_dictionaries({
            "assets": st.just(list(names)), "prices": _rows(len(names), history),
            "confirm_jump": st.one_of(st.booleans(), st.lists(st.sampled_from(names),
                                                              unique=True))})
    return assets.flatmap(body)


def _portfolio(window: dict) -> st.SearchStrategy:
    return st.fixed_dictionaries({
        "assets": st.just(window["assets"]), "prices": st.just(window["prices"]),
        "id": st.one_of(st.none(), st.sampled_from(["q1", "q2", *PIDS]),
                        st.text(max_size=8))})


def _ticks(last: np.ndarray) -> st.SearchStrategy:
    moves = st.one_of(st.floats(-0.05, 0.05), st.sampled_from([-3.0, 2.0, 0.0]))
    prices = st.lists(moves, min_size=len(last), max_size=len(last)).map(
        lambda r: dict(zip(ASSETS, (last * np.exp(r)).tolist(), strict=True)))
    return st.fixed_dictionaries(
        {"prices": st.one_of(prices, st.lists(PRICE, min_size=4, max_size=4))},
        optional={"confirm_jump": st.booleans(),
                  "timestamp": st.one_of(
                      st.floats(allow_nan=False, allow_infinity=False),
                      st.datetimes().map(lambda d: d.isoformat()))})


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented(case, api_schema):
    api_schema.seed()
    response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                      checks=CHECKS)
    SEEN[(api_schema.service, f"{case.method} {case.path}", response.status_code)] += 1
