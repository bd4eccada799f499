"""The ``neuralfolio scratch`` sub-commands, run through Typer's test runner."""

import json

import pytest
from typer.testing import CliRunner

from neuralfolio._cli_scratch import scratch_app
from neuralfolio.errors import ConfigError

runner = CliRunner()

PRINTED_FIRST, PRINTED_LAST = "0.822322582088", "0.203407060401"


@pytest.mark.parametrize("command", ["toy", "moons", "summary"])
def test_every_command_has_an_example(command):
    result = runner.invoke(scratch_app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example: neuralfolio scratch" in result.output


def test_toy_json_returns_the_twenty_losses():
    result = runner.invoke(scratch_app, ["toy", "--json"])
    assert result.exit_code == 0, result.output
    losses = json.loads(result.output)["loss"]
    assert len(losses) == 20
    assert format(losses[0], ".12g") == PRINTED_FIRST
    assert format(losses[-1], ".12g") == PRINTED_LAST


def test_toy_table():
    result = runner.invoke(scratch_app, ["toy"])
    assert result.exit_code == 0, result.output
    assert PRINTED_FIRST in result.output and PRINTED_LAST in result.output


def test_summary_prints_the_chapter_totals():
    result = runner.invoke(scratch_app, ["summary"])
    assert result.exit_code == 0, result.output
    assert "Total params: 13" in result.output
    assert "Non-trainable params: 0" in result.output
    data = json.loads(runner.invoke(scratch_app, ["summary", "--json"]).output)
    assert [r["params"] for r in data["layers"]] == [9, 0, 4, 0]
    assert data["total_params"] == 13


def test_summary_of_a_deeper_network():
    result = runner.invoke(scratch_app, ["summary", "--hidden", "8,8", "--input-dim", "4",
                                         "--activation", "relu", "--json"])
    assert json.loads(result.output)["total_params"] == 4 * 8 + 8 + 8 * 8 + 8 + 8 + 1


def test_moons_writes_plots_and_json(tmp_path):
    out = tmp_path / "plots"
    result = runner.invoke(scratch_app, [
        "moons", "--hidden", "1,3", "--n-train", "60", "--n-test", "40", "--epochs", "30",
        "--out", str(out), "--json", "--history"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [f["hidden"] for f in data["fits"]] == [1, 3]
    assert len(data["fits"][0]["loss"]) == 30
    assert sorted(p.name for p in out.glob("*.png")) == [
        "moons_h1.png", "moons_h3.png", "moons_loss.png"]


def test_moons_table():
    result = runner.invoke(scratch_app, ["moons", "--hidden", "2", "--n-train", "40",
                                         "--n-test", "20", "--epochs", "5"])
    assert result.exit_code == 0, result.output
    assert "held-out acc" in result.output


@pytest.mark.parametrize(("args", "match"), [
    (["moons", "--hidden", "1,x"], "--hidden must be comma-separated whole numbers"),
    (["moons", "--hidden", "0"], "every size >= 1"),
    (["moons", "--alpha", "0"], "--alpha must be > 0"),
    (["toy", "--epochs", "0"], "--epochs must be >= 1"),
    (["summary", "--activation", "swish"], "unknown activation 'swish'"),
])
def test_bad_options_raise_config_error(args, match):
    result = runner.invoke(scratch_app, args)
    assert isinstance(result.exception, ConfigError)
    assert match in str(result.exception)
