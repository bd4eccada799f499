import json

import pytest

from neuralfolio.config import DEFAULT_OUTCOME, RunConfig, read_config_file
from neuralfolio.errors import ConfigError


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".yml", ".json"])
def test_run_config_reads_every_format_the_same(tmp_path, suffix):
    d = {"data": "gfc", "window": 60, "train": {"model": "attention", "head": "capped",
                                                "head_options": {"max_weight": 0.3}},
         "outcome_train": {"horizon": 5}}
    path = tmp_path / f"run{suffix}"
    if suffix == ".toml":
        path.write_text('data = "gfc"\nwindow = 60\n[train]\nmodel = "attention"\n'
                        'head = "capped"\nhead_options = {max_weight = 0.3}\n'
                        "[outcome_train]\nhorizon = 5\n")
    elif suffix == ".json":
        path.write_text(json.dumps(d))
    else:
        path.write_text("data: gfc\nwindow: 60\ntrain:\n  model: attention\n  head: capped\n"
                        "  head_options: {max_weight: 0.3}\noutcome_train:\n  horizon: 5\n")
    cfg = RunConfig.from_file(path)
    assert cfg.window == 60 and cfg.train.model == "attention"
    assert cfg.train.head_options == {"max_weight": 0.3}
    # the outcome network keeps its defaults for what the file does not say
    assert cfg.outcome_train.horizon == 5 and cfg.outcome_train.loss == DEFAULT_OUTCOME["loss"]
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_bad_config_files_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_config_file(tmp_path / "missing.yaml")
    (tmp_path / "a.ini").write_text("x=1")
    with pytest.raises(ConfigError, match=r"\.toml, \.yaml/\.yml or \.json"):
        read_config_file(tmp_path / "a.ini")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        read_config_file(tmp_path / "list.yaml")
    (tmp_path / "bad.toml").write_text("window = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="Unknown config field"):
        RunConfig.from_dict({"windw": 3})
    with pytest.raises(ConfigError, match="Unknown train setting"):
        RunConfig.from_dict({"train": {"hiden": [3]}})
    with pytest.raises(ConfigError, match="refit_epochs"):
        RunConfig(refit_epochs=0)


def test_settings_keep_defaults_but_not_options_of_another_family_or_head():
    cfg = RunConfig.from_dict({"outcome_train": {"head": "simplex"},
                               "train": {"model": "dense", "hidden": [8]}})
    assert cfg.outcome_train.head == "simplex" and cfg.outcome_train.head_options == {}
    assert cfg.outcome_train.loss == "variance"
    assert cfg.train.model == "dense" and cfg.train.model_options == {}
    assert cfg.train.head == "simplex"  # the run default head stays
    assert RunConfig().outcome_train.head_options == {"gross_leverage": 1.5}


def test_trading_and_schedule_settings(tmp_path):
    (tmp_path / "run.yaml").write_text(
        "rebalance: weekly\ncost_bps: 2.5\nfixed_cost: 0.0001\ncash_rate: 0.03\n"
        "retrain_every: quarterly\ntrain_window: 1000\npurge: 5\n"
        "policies: [optimizer_daily, equal_weight, buy_and_hold, 'skfolio:RiskBudgeting']\n")
    cfg = RunConfig.from_file(tmp_path / "run.yaml")
    ex = cfg.execution()
    assert (ex.rebalance, ex.cost_bps, ex.fixed_cost, ex.cash_rate) == ("weekly", 2.5, 1e-4, 0.03)
    assert cfg.retrain_every == "quarterly" and cfg.train_window == 1000 and cfg.purge == 5
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("settings, match", [
    ({"rebalance": "hourly"}, "Unknown rebalance rule 'hourly'"),
    ({"cost_bps": -1}, "cost_bps must be a finite number >= 0"),
    ({"retrain_every": "fortnightly"}, "retrain_every is a number of test dates or one of"),
    ({"retrain_every": 0}, "retrain_every must be >= 1"),
    ({"purge": -3}, "train_window and purge must be >= 0"),
    ({"policies": ["network", "skfolio_HRP"]}, "Unknown policy name"),
    ({"baselines": ["optimiser"]}, "benchmark/baselines name unknown policies"),
])
def test_bad_trading_settings_are_explained(settings, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig.from_dict(settings)
