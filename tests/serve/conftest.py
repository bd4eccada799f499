"""A registry with two small trained versions, shared by the service tests."""

import contextlib
import threading
import time

import pytest

from neuralfolio.data import synthetic_prices
from neuralfolio.features import FeatureSpec
from neuralfolio.nn import NeuralAllocator, TrainConfig
from neuralfolio.optimize import min_variance_labels
from neuralfolio.serve import ModelRegistry
from neuralfolio.serve.models import register_allocator

WINDOW = 30


@pytest.fixture(scope="session")
def market():
    """Synthetic prices of 4 assets: 300 training rows, the rest streamed as ticks."""
    return synthetic_prices(4, 420, seed=5)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, market):
    """A registry directory holding minvar:1 and minvar:2 (two seeds), minvar:1 active."""
    root = tmp_path_factory.mktemp("registry")
    reg = ModelRegistry(root)
    train = market.iloc[:300]
    labels = min_variance_labels(train, window=WINDOW).weights
    for seed in (0, 1):
        model = NeuralAllocator(FeatureSpec("risk", WINDOW), TrainConfig(
            hidden=(16,), head="simplex", max_epochs=5, seed=seed)).fit(train, labels)
        register_allocator(reg, model, "minvar", train, window=WINDOW)
    reg.activate("minvar", 1)
    return root


@pytest.fixture
def registry_copy(model_dir, tmp_path):
    """A private copy of the registry (tests activate versions and write audit logs)."""
    import shutil

    dst = tmp_path / "registry"
    shutil.copytree(model_dir, dst, ignore=shutil.ignore_patterns("audit.db*"))
    return dst


@pytest.fixture
def live_server():
    """``with live_server(config) as url:`` runs the app on loopback (see :func:`_serve`)."""
    return _serve


@contextlib.contextmanager
def _serve(config):
    """A real uvicorn server of the app for ``config`` on a free loopback port, in a
    thread; yields its base URL and stops it afterwards."""
    import uvicorn

    from neuralfolio.serve import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        end = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < end, "the server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert not thread.is_alive()
