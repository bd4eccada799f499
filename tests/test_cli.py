import json

import numpy as np
import pytest
from typer.testing import CliRunner

from neuralfolio.cli import app, main
from neuralfolio.data import synthetic_prices

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def price_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "prices.csv"
    synthetic_prices(4, 500, seed=2).to_csv(path)
    return path


@pytest.mark.parametrize(
    "command",
    [["data", "list"], ["data", "show"], ["labels"], ["train"], ["predict"], ["backtest"],
     ["demo"], ["report"], ["scratch", "toy"], ["scratch", "moons"], ["scratch", "summary"],
     ["serve"], ["retrain"], ["audit"], ["replay"]],
)
def test_every_command_has_help_with_an_example(command):
    result = _invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Example: neuralfolio" in result.output


def test_data_list_json():
    result = _invoke("data", "list", "--json")
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["sp500", "factors", "gfc"]
    gfc = rows[2]
    assert gfc["assets"] == 4
    assert gfc["start"].startswith("2005") and gfc["end"].startswith("2010")


def test_data_show_file_and_dataset(price_file):
    info = json.loads(_invoke("data", "show", str(price_file), "--json").stdout)
    assert info["dates"] == 500
    assert [a["asset"] for a in info["assets"]] == ["A0", "A1", "A2", "A3"]
    assert "BAC" in _invoke("data", "show", "gfc").output


def test_labels_writes_parquet(price_file, tmp_path):
    out = tmp_path / "labels.parquet"
    info = json.loads(_invoke("labels", str(price_file), "--window", "60", "--out", str(out),
                              "--json").stdout)
    assert info["dates"] == 440
    assert info["params"]["window"] == 60
    assert out.exists()


def test_train_then_predict_the_courses_way(price_file, tmp_path):
    model = tmp_path / "model"
    info = json.loads(_invoke("train", str(price_file), "--features", "prices", "--hidden", "8",
                              "--epochs", "5", "--window", "60", "--out", str(model),
                              "--json").stdout)
    assert info["features"] == "prices"
    out = _invoke("predict", str(model), "--prices", "A0=101,A1=99,A2=120,A3=80", "--json")
    weights = next(iter(json.loads(out.stdout).values()))
    assert set(weights) == {"A0", "A1", "A2", "A3"}
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-6)
    positional = _invoke("predict", str(model), "--prices", "101,99,120,80", "--json")
    assert next(iter(json.loads(positional.stdout).values())) == weights


def test_train_and_predict_risk_model_from_file(price_file, tmp_path):
    model = tmp_path / "model"
    _invoke("train", str(price_file), "--hidden", "8", "--epochs", "5", "--window", "60",
            "--augment", "50", "--out", str(model), "--json")
    out = json.loads(_invoke("predict", str(model), "--file", str(price_file), "--json").stdout)
    assert len(out) == 1
    many = json.loads(_invoke("predict", str(model), "--file", str(price_file), "--all",
                              "--json").stdout)
    assert len(many) == 500 - 60


def test_backtest_json(price_file, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'window = 60\nretrain_every = 100\naugment = 50\n'
        'policies = ["network", "optimizer_daily", "equal_weight", "buy_and_hold"]\n'
        '[train]\nhidden = [8]\nmax_epochs = 4\n'
    )
    out = tmp_path / "run"
    result = _invoke("backtest", str(price_file), "--config", str(cfg), "--test-start",
                     "2001-06-01", "--cost-bps", "7", "--rebalance", "weekly", "--purge", "3",
                     "--retrain-every", "monthly", "--out", str(out), "--json")
    summary = json.loads(result.stdout)
    assert set(summary["policies"]) == {"network", "optimizer_daily", "equal_weight",
                                        "buy_and_hold"}
    assert summary["policies"]["equal_weight"]["cost"] > 0
    pairs = {(p["policy"], p["baseline"], p["statistic"]) for p in summary["paired"]}
    assert ("network", "optimizer_daily", "volatility") in pairs
    assert ("network", "equal_weight", "sharpe") in pairs
    saved = json.loads((out / "config.json").read_text())
    assert saved["window"] == 60 and saved["train"]["hidden"] == [8]
    assert (saved["cost_bps"], saved["rebalance"], saved["purge"]) == (7.0, "weekly", 3)
    assert saved["retrain_every"] == "monthly"
    run = json.loads((out / "run.json").read_text())
    assert run["execution"]["buy_and_hold"]["rebalance"] == "never"
    assert (out / "report.html").stat().st_size > 10_000
    # The report can be written again from the run directory alone.
    (out / "report.html").unlink()
    _invoke("report", str(out))
    assert (out / "report.html").exists()


def test_demo_cases(cli_error):
    from neuralfolio.pipeline import demo_config

    gfc = demo_config("gfc", seed=3)
    assert gfc.data == "gfc" and gfc.test_start.startswith("2008")
    assert gfc.report_focus[2] == "September 2008" and gfc.train.seed == 3
    assert demo_config("sp500").test_end == "2022-12-31"
    err = cli_error("demo", "--case", "dotcom")
    assert "Unknown demo case 'dotcom'" in err and "gfc" in err



def test_errors_are_one_clear_line(cli_error, price_file, tmp_path):
    err = cli_error("data", "show", "sp5000")
    assert "Unknown dataset 'sp5000'" in err and "sp500" in err
    err = cli_error("data", "show", str(tmp_path / "nope.csv"))
    assert "File not found" in err
    err = cli_error("backtest", "--policies", "magic")
    assert "Unknown policy name" in err
    err = cli_error("predict", str(tmp_path))
    assert "not a saved model" in err
    err = cli_error("report", str(tmp_path))
    assert "not a saved backtest run" in err
    err = cli_error("backtest", "--rebalance", "hourly")
    assert "Unknown rebalance rule 'hourly'" in err


def test_predict_rejects_bad_prices(cli_error, price_file, tmp_path):
    model = tmp_path / "model"
    _invoke("train", str(price_file), "--features", "prices", "--hidden", "4", "--epochs", "2",
            "--out", str(model), "--json")
    err = cli_error("predict", str(model), "--prices", "1,2")
    assert "but there are 4 assets" in err
    err = cli_error("predict", str(model), "--prices", "1,2,-3,4")
    assert "positive" in err
    err = cli_error("predict", str(model), "--prices", "A0=1,B=2")
    assert "missing" in err


def test_demo_lesson_reads_the_table(tmp_path):
    from neuralfolio.cli import _demo_lesson
    from neuralfolio.config import RunConfig
    from neuralfolio.nn import TrainConfig
    from neuralfolio.pipeline import run_backtest

    cfg = RunConfig(data="gfc", test_start="2008-01-01", window=60, retrain_every=250,
                    augment=200, train=TrainConfig(hidden=(8,), max_epochs=3),
                    outcome_window=60, outcome_train={"max_epochs": 2, "horizon": 5},
                    report_focus=["2008-09-01", "2008-09-30", "September 2008"])
    text = _demo_lesson(run_backtest(cfg, tmp_path), cfg)
    assert "Through September 2008: mean L1 to the daily optimizer network" in text
    assert "Trained on realized variance, without labels: volatility" in text
    assert "The course's price inputs: L1" in text
    assert "outside its training range" in text
    assert "Risk inputs: L1" in text and "µs per update" in text


def test_repairs_are_reported_as_one_line_warnings(monkeypatch, capsys, tmp_path):
    prices = synthetic_prices(3, 50, seed=0)
    prices.iloc[10:12, 1] = float("nan")
    path = tmp_path / "gappy.csv"
    prices.to_csv(path)
    monkeypatch.setattr("sys.argv", ["neuralfolio", "data", "show", str(path), "--json"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("warning:")
    assert "forward-filled 1 short gap" in err and "A1" in err


def test_max_fill_option_accepts_a_longer_gap(cli_error, tmp_path):
    prices = synthetic_prices(3, 50, seed=0)
    prices.iloc[10:18, 2] = float("nan")
    path = tmp_path / "gappy.csv"
    prices.to_csv(path)
    err = cli_error("data", "show", str(path))
    assert "8 missing prices in a row" in err and "--max-fill" in err
    info = json.loads(_invoke("data", "show", str(path), "--max-fill", "8", "--json").stdout)
    assert info["dates"] == 50


def test_labels_objective_cov_jobs_and_augment(price_file, tmp_path):
    out = tmp_path / "rp.parquet"
    info = json.loads(_invoke("labels", str(price_file), "--objective", "risk_parity", "--cov",
                              "ewma", "--window", "60", "--jobs", "2", "--backend", "threading",
                              "--augment", "30", "--out", str(out), "--json").stdout)
    assert info["params"]["objective"] == "risk_parity"
    assert info["params"]["covariance"] == "ewma"
    assert info["dates"] == 440
    import pandas as pd

    scen = pd.read_parquet(info["scenarios"]["out"])
    assert scen.shape == (30, 10 + 4)
    np.testing.assert_allclose(scen.filter(like="w:").sum(axis=1), 1.0, atol=1e-6)


def test_labels_bad_options_are_one_line(cli_error, price_file):
    err = cli_error("labels", str(price_file), "--objective", "magic")
    assert "Unknown objective 'magic'" in err
    err = cli_error("labels", str(price_file), "--augment", "5")
    assert "give --out too" in err


def test_train_any_family_head_and_loss_from_a_yaml_file(price_file, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("train:\n  model: attention\n  model_options: {d_model: 8, n_heads: 2,"
                   " n_layers: 1}\n  head: capped\n  head_options: {max_weight: 0.5}\n"
                   "  max_epochs: 2\n")
    out = tmp_path / "m"
    info = json.loads(_invoke("train", str(price_file), "--config", str(cfg), "--window", "30",
                              "--augment", "0", "--out", str(out), "--plot",
                              str(tmp_path / "loss.png"), "--json").stdout)
    assert info["network"] == "attention" and info["head"] == "capped"
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["architecture"]["class"] == "AssetAttentionAllocator"
    assert manifest["head"] == {"name": "capped", "max_weight": 0.5, "cash": False}
    # flags override the file; an outcome loss needs no labels
    info = json.loads(_invoke("train", str(price_file), "--config", str(cfg), "--model", "dense",
                              "--hidden", "8", "--loss", "variance", "--horizon", "5",
                              "--window", "30", "--out", str(out), "--overwrite",
                              "--json").stdout)
    assert info["network"] == "dense" and info["loss"] == "variance"


def test_train_bad_settings_are_one_line(cli_error, price_file, tmp_path):
    err = cli_error("train", str(price_file), "--model", "transformer")
    assert "Unknown model 'transformer'" in err and "attention" in err
    err = cli_error("train", str(price_file), "--loss", "mse +")
    assert "loss" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    err = cli_error("train", str(price_file), "--config", str(bad))
    assert "not valid YAML" in err
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[train]\nlayers = 3\n")
    err = cli_error("train", str(price_file), "--config", str(unknown))
    assert "Unknown train setting(s) ['layers']" in err
