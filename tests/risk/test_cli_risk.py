import json
import re

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from neuralfolio._cli_risk import risk
from neuralfolio.data import load_prices, simple_returns
from neuralfolio.errors import ConfigError
from neuralfolio.risk import (
    VAR_METHODS,
    annualized_volatility,
    conditional_value_at_risk,
    max_drawdown,
    sharpe_ratio,
    value_at_risk,
)

app = typer.Typer()
app.command("risk")(risk)
app.command("noop")(lambda: None)  # a single-command app would collapse into that command

runner = CliRunner()
WEIGHTS = {"BAC": 0.25, "JPM": 0.25, "GE": 0.25, "HD": 0.25}


@pytest.fixture(scope="module")
def portfolio_returns():
    prices = load_prices("gfc")
    w = np.array([WEIGHTS[a] for a in prices.columns])
    return simple_returns(prices).to_numpy() @ w


@pytest.fixture(scope="module")
def report():
    result = runner.invoke(
        app, ["risk", "gfc", "--weights", "BAC=0.25,JPM=0.25,GE=0.25,HD=0.25", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_report_matches_the_library(report, portfolio_returns):
    r = portfolio_returns
    assert report["observations"] == len(r)
    assert report["annualized_volatility"] == pytest.approx(annualized_volatility(r))
    assert report["sharpe"] == pytest.approx(sharpe_ratio(r))
    assert report["max_drawdown"] == pytest.approx(max_drawdown(r))
    assert report["sortino"] > report["sharpe"]
    rows = {(t["method"], t["horizon"], t["confidence"]): t for t in report["tail_risk"]}
    assert set(rows) == {(m, h, c) for m in VAR_METHODS for h in (1, 10) for c in (0.95, 0.99)}
    assert rows[("normal", 1, 0.95)]["var"] == pytest.approx(
        value_at_risk(r, 0.95, 1, "normal"), rel=1e-12)
    assert rows[("historical", 10, 0.99)]["cvar"] == pytest.approx(
        conditional_value_at_risk(r, 0.99, 10, "historical"), rel=1e-12)
    assert rows[("monte_carlo", 10, 0.95)]["var"] == pytest.approx(
        value_at_risk(r, 0.95, 10, "monte_carlo"), rel=1e-12)
    assert all(0 < t["var"] <= t["cvar"] for t in report["tail_risk"])


def test_json_report_has_risk_contributions(report):
    assets = report["assets"]
    assert [a["asset"] for a in assets] == ["BAC", "JPM", "GE", "HD"]
    assert [a["weight"] for a in assets] == pytest.approx(list(WEIGHTS.values()))
    assert sum(a["risk_share"] for a in assets) == pytest.approx(1.0)
    assert sum(a["risk_contribution"] for a in assets) == pytest.approx(
        report["annualized_volatility"], rel=1e-10)


def test_weights_in_asset_order_pairs_in_any_order_and_equal(report):
    opts = ["--json", "--confidence", "0.99", "--horizon", "1"]
    by_order = runner.invoke(app, ["risk", "gfc", "--weights", "0.4,0.3,0.2,0.1", *opts])
    by_name = runner.invoke(app, ["risk", "gfc", "--weights", "HD=0.1,GE=0.2,JPM=0.3,BAC=0.4",
                                  *opts])
    equal = runner.invoke(app, ["risk", "gfc", *opts])
    assert by_order.exit_code == by_name.exit_code == equal.exit_code == 0
    a, b, e = (json.loads(x.stdout) for x in (by_order, by_name, equal))
    assert [x["weight"] for x in a["assets"]] == [0.4, 0.3, 0.2, 0.1]
    assert a["tail_risk"] == b["tail_risk"]
    assert len(a["tail_risk"]) == len(VAR_METHODS)
    assert e["tail_risk"] == [t for t in report["tail_risk"]
                              if t["horizon"] == 1 and t["confidence"] == 0.99]


def test_table_output_and_short_history_note():
    result = runner.invoke(app, ["risk", "gfc", "--start", "2010-06-01"])
    assert result.exit_code == 0, result.output
    for text in ("annualized volatility", "Sortino", "monte_carlo", "student_t", "10d 99%",
                 "share of risk", "n/a", "needs 209 daily returns"):
        assert text in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--weights", "BAC=0.3,JPM=0.3,GE=0.2,HD=0.1"], r"sum to 0\.9, not 1; normalise"),
        (["--weights", "BAC=0.25,JPM=0.25,GE=0.25,XYZ=0.25"],
         r"unknown \['XYZ'\], missing \['HD'\]"),
        (["--weights", "0.5,0.5"], r"2 value\(s\) but there are 4 assets.*BAC,JPM,GE,HD"),
        (["--weights", "0.25,0.25,0.25,abc"], r"must be numbers"),
        (["--weights", "BAC=0.5,BAC=0.5"], r"names \['BAC'\] more than once"),
        (["--confidence", "95"], r"give 99% as 0\.99"),
        (["--horizon", "0"], r"horizon must be at least 1"),
    ],
)
def test_bad_options_fail_with_a_clear_message(args, message):
    result = runner.invoke(app, ["risk", "gfc", *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert re.search(message, str(result.exception)), str(result.exception)


def test_docstring_has_the_example():
    assert "Example: neuralfolio risk gfc --weights BAC=0.25,JPM=0.25,GE=0.25,HD=0.25" in (
        risk.__doc__)
