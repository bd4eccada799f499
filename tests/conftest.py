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


@pytest.fixture
def cli_error(monkeypatch, capsys):
    """Run the ``neuralfolio`` entry point with arguments that must fail: it exits with 2 and
    prints one clean line (no traceback), returned with whitespace collapsed."""
    from neuralfolio.cli import main

    def run(*args) -> str:
        monkeypatch.setattr("sys.argv", ["neuralfolio", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return " ".join(err.split())

    return run


os.environ.setdefault("OMP_NUM_THREADS", "2")
