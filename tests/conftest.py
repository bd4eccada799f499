import os

import pytest

from neuralfolio.data import synthetic_prices


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Label caches of tests never touch the user's ~/.cache.
    monkeypatch.setenv("NEURALFOLIO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def small_prices():
    """Four synthetic assets over 600 business days."""
    return synthetic_prices(4, 600, seed=1)


os.environ.setdefault("OMP_NUM_THREADS", "2")
