"""The CLI offers what its error messages tell users to do, shows its defaults, and never
overwrites a saved model silently."""

import json

import pytest
from typer.testing import CliRunner

from neuralfolio.cli import app
from neuralfolio.data import synthetic_prices

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, list(map(str, args)), catch_exceptions=False,
                         env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def price_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "prices.csv"
    p = synthetic_prices(4, 500, seed=2)
    p["Volume"] = 1_000_000 + (p["A0"] * 1000).round()  # a column that is not a price
    p.to_csv(path)
    return path


LOADERS = [["data", "show"], ["labels"], ["train"], ["backtest"], ["risk"], ["predict"]]


@pytest.mark.parametrize("command", LOADERS)
def test_every_loading_command_takes_the_data_flags(command):
    text = _invoke(*command, "--help").output
    for flag in ("--start", "--end", "--assets", "--drop", "--layout"):
        assert flag in text, (command, flag)


def test_help_keeps_bracketed_words_and_shows_backtest_defaults():
    text = " ".join(_invoke("backtest", "--help").output.split())
    assert "[train] and [outcome_train]" in text
    assert "[default: 2011-01-01]" in text  # the test start a user would otherwise not see
    assert "[default: 63]" in text and "[default: 5.0]" in text and "[default: 126]" in text


def test_default_test_start_after_the_data_is_explained(cli_error):
    err = cli_error("backtest", "gfc", "--policies", "equal_weight", "--no-report")
    assert "gfc covers 2005-01-03..2010-12-31" in err
    assert "starts 2011-01-01 (the default)" in err and "--test-start" in err


def test_backtest_start_end_assets_and_drop(price_file, tmp_path):
    out = tmp_path / "run"
    summary = json.loads(_invoke(
        "backtest", price_file, "--drop", "Volume", "--assets", "A2,A0,A1", "--start",
        "2000-03-01", "--end", "2001-10-31", "--test-start", "2001-01-02", "--window", "40",
        "--policies", "optimizer_daily,equal_weight", "--no-report", "--out", out,
        "--json").stdout)
    saved = json.loads((out / "config.json").read_text())
    assert saved["assets"] == ["A2", "A0", "A1"]
    assert saved["start"] == "2000-03-01" and saved["end"] == "2001-10-31"
    assert set(summary["policies"]) == {"optimizer_daily", "equal_weight"}


def test_train_refuses_to_overwrite_a_model(cli_error, price_file, tmp_path):
    model = tmp_path / "m"
    args = ["train", price_file, "--drop", "Volume", "--features", "prices", "--hidden", "4",
            "--epochs", "1", "--window", "40", "--out", model]
    first = _invoke(*args)
    assert f"Saved to {model}" in " ".join(first.output.split())
    before = (model / "manifest.json").read_text()
    err = cli_error(*args)
    assert "already holds a model" in err and "--overwrite" in err
    assert (model / "manifest.json").read_text() == before
    _invoke(*args, "--overwrite", "--seed", "3")
    assert (model / "manifest.json").read_text() != before


def test_train_capped_head_learns_capped_labels(cli_error, price_file, tmp_path):
    err = cli_error("train", price_file, "--drop", "Volume", "--head", "capped")
    assert "needs max_weight in head_options" in err
    caps = tmp_path / "caps.yaml"
    caps.write_text("head: capped\nhead_options: {max_weight: 0.3}\n")
    model = tmp_path / "capped"
    info = json.loads(_invoke(
        "train", price_file, "--drop", "Volume", "--config", caps, "--model", "dense",
        "--hidden", "4", "--epochs", "1", "--augment", "20", "--window", "40", "--out", model,
        "--json").stdout)
    assert info["labels"]["constraints"]["upper"] < 1.0
    manifest = json.loads((model / "manifest.json").read_text())
    cap = manifest["head"]["max_weight"]
    assert manifest["labels"]["constraints"]["upper"] == cap
    assert manifest["labels"]["scenarios"]["constraints"]["upper"] == cap


def test_predict_warns_and_strict_refuses_far_inputs(cli_error, price_file, tmp_path, capsys):
    model = tmp_path / "course"
    _invoke("train", price_file, "--drop", "Volume", "--features", "prices", "--hidden", "4",
            "--epochs", "1", "--window", "40", "--out", model)
    err = cli_error("predict", model, "--prices", "A0=5000,A1=100,A2=100,A3=100", "--strict")
    assert "price of A0" in err and "sd" in err
    import sys

    from neuralfolio.cli import main

    sys_argv = ["neuralfolio", "predict", str(model), "--prices",
                "A0=5000,A1=100,A2=100,A3=100", "--json"]
    old, sys.argv = sys.argv, sys_argv
    try:
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code == 0
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "price of A0" in captured.err
    assert set(next(iter(json.loads(captured.out).values()))) == {"A0", "A1", "A2", "A3"}
