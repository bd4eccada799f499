"""The main job: data -> labels -> policies -> walk-forward -> files. The CLI calls this."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from neuralfolio.backtest import BacktestResult, walk_forward
from neuralfolio.config import SKFOLIO_PREFIX, RunConfig, cache_dir, run_defaults
from neuralfolio.data import load_prices
from neuralfolio.errors import ConfigError
from neuralfolio.features import FeatureSpec
from neuralfolio.nn import NeuralAllocator, TrainConfig, label_constraints
from neuralfolio.optimize import LabelSet, rolling_labels
from neuralfolio.policies import (
    BuyAndHold,
    EqualWeight,
    InverseVolatility,
    MinVariancePolicy,
    NeuralPolicy,
    Policy,
    SkfolioPolicy,
)

__all__ = [
    "DEMO_CASES",
    "build_policies",
    "check_test_period",
    "demo_config",
    "load_run_prices",
    "paired_table",
    "run_backtest",
    "run_labels",
]

DEMO_CASES: dict[str, str] = {
    "sp500": "20 S&P 500 stocks: train on 1990-2010, then decide daily through 2011-2022, "
             "re-training every 63 trading days on the data available then",
    "gfc": "The crisis case: BAC, JPM, GE and HD; train on 2005-2007, then decide daily "
           "through the 2008 crash and its aftermath (2008-2010), re-training every 21 "
           "trading days",
}
"""Runs of ``neuralfolio demo --case``."""


def demo_config(case: str = "sp500", seed: int = 0) -> RunConfig:
    """The run config of a demo case (:data:`DEMO_CASES`) with the networks' seed."""
    if case == "sp500":
        cfg = RunConfig(data="sp500", test_start="2011-01-01", test_end="2022-12-31")
    elif case == "gfc":
        # The course's exercise on the crisis: prices-to-weights network next to the risk
        # networks and the optimizer it imitates; monthly re-training as the crash unfolds.
        cfg = RunConfig(data="gfc", test_start="2008-01-01", test_end="2010-12-31",
                        retrain_every=21,
                        report_focus=["2008-08-01", "2008-11-28", "September 2008"])
    else:
        raise ConfigError(f"Unknown demo case {case!r}; choose one of {', '.join(DEMO_CASES)}.")
    cfg.train.seed = cfg.outcome_train.seed = seed
    return cfg


def paired_table(result: BacktestResult, baselines: list[str], *, n_boot: int = 2000,
                 block: int = 21, seed: int = 0) -> pd.DataFrame:
    """Paired block-bootstrap intervals of each policy against each baseline in the run.

    Returns
    -------
    DataFrame
        Index (policy, baseline, statistic) for statistic in volatility and sharpe; columns
        ``estimate``, ``low``, ``high`` of ``statistic(policy) - statistic(baseline)``.
    """
    parts = []
    for base in baselines:
        if base in result.weights:
            p = result.paired(base, ("volatility", "sharpe"), n_boot=n_boot, block=block,
                              seed=seed)
            p.index = pd.MultiIndex.from_tuples([(name, base, stat) for name, stat in p.index])
            parts.append(p)
    if not parts:
        return pd.DataFrame(columns=["estimate", "low", "high"])
    return pd.concat(parts)


def load_run_prices(config: RunConfig) -> pd.DataFrame:
    """The validated price panel a config names."""
    return load_prices(config.data, start=config.start, end=config.end, assets=config.assets,
                       drop=config.drop, layout=config.layout, max_fill=config.max_fill)


def build_policies(config: RunConfig, *, progress: bool = False,
                   prices: pd.DataFrame | None = None) -> dict[str, Policy]:
    """Fresh policy objects for the names in ``config.policies``.

    The optimizers solve under the imitation network's mandate (the run's labels'
    constraints; long-only without ``prices``, which give the number of assets). The
    course's network, whose softmax head is long-only, gets long-only labels of its own
    when the run's are not.
    """
    w = config.window
    n = None if prices is None else prices.shape[1]
    mandate = label_constraints(config.train, n) if n else None
    course = _course(config.train)
    own = (run_labels(config, prices, course)
           if n and "network_prices" in config.policies
           and label_constraints(course, n) != mandate else None)
    refit = {"fine_tune": config.fine_tune, "refit_epochs": config.refit_epochs,
             "refit_recent": config.refit_recent or None, "progress": progress}
    makers = {
        "network": lambda: NeuralPolicy(
            NeuralAllocator(FeatureSpec("risk", w), config.train, augment=config.augment),
            refit_augment=config.refit_augment, **refit,
        ),
        "network_prices": lambda: NeuralPolicy(
            NeuralAllocator(FeatureSpec("prices", w), course), labels=own,
            **refit,
        ),
        "network_outcome": lambda: NeuralPolicy(
            NeuralAllocator(FeatureSpec("risk", config.outcome_window), config.outcome_train),
            **{**refit, "refit_recent": config.outcome_refit_recent or None},
        ),
        "optimizer_daily": lambda: MinVariancePolicy(w, "daily", constraints=mandate),
        "optimizer_at_retrain": lambda: MinVariancePolicy(w, "at_fit", constraints=mandate),
        "equal_weight": EqualWeight,
        "inverse_volatility": lambda: InverseVolatility(w),
        "buy_and_hold": BuyAndHold,
    }
    return {name: SkfolioPolicy.named(name.removeprefix(SKFOLIO_PREFIX), w)
            if name.startswith(SKFOLIO_PREFIX) else makers[name]()
            for name in config.policies}


def _course(train: TrainConfig) -> TrainConfig:
    # The course's network: dense with a softmax output, whatever the risk network is.
    return replace(train, model="dense", model_options={}, head="softmax", head_options={})


def check_test_period(config: RunConfig, index: pd.DatetimeIndex) -> None:
    """Refuse a test period that misses the data, naming the flags that fix it.

    Raises
    ------
    ConfigError
        ``test_start`` is not before the panel's last date, or ``test_end`` is before
        ``test_start``.
    """
    start = pd.Timestamp(config.test_start)
    default = " (the default)" if config.test_start == run_defaults()["test_start"] else ""
    first, last = index[0].date(), index[-1].date()
    if start >= index[-1] or start <= index[0]:
        hint = index[len(index) * 2 // 3].date()
        raise ConfigError(
            f"{config.data} covers {first}..{last}, but the test period starts "
            f"{start.date()}{default}: give a first out-of-sample date inside the data with "
            f"--test-start (test_start in a config), e.g. --test-start {hint}.")
    if config.test_end is not None and pd.Timestamp(config.test_end) <= start:
        raise ConfigError(f"test_end {config.test_end} is not after test_start "
                          f"{config.test_start}; give --test-end after --test-start.")


def run_labels(config: RunConfig, prices: pd.DataFrame,
               train: TrainConfig | None = None) -> LabelSet:
    """The run's labels: rolling minimum-variance weights (Ledoit-Wolf, ``config.window``)
    under the constraints of the imitation network's head, or of ``train``'s (cached)."""
    constraints = label_constraints(train or config.train, prices.shape[1])
    return rolling_labels(prices, objective="min_variance", window=config.window,
                          cov="ledoit_wolf", constraints=constraints,
                          cache_dir=cache_dir() / "labels")


def run_backtest(
    config: RunConfig,
    out_dir: str | Path | None = None,
    *,
    progress: bool = False,
    prices: pd.DataFrame | None = None,
) -> BacktestResult:
    """Load data, make labels (cached), run every policy walk-forward, and save the run.

    Parameters
    ----------
    config : RunConfig
    out_dir : path, optional
        Where ``summary.json``, ``config.json``, ``returns.csv`` and ``weights/`` go.
    progress : bool
    prices : DataFrame, optional
        Use this panel instead of loading ``config.data``.

    Returns
    -------
    BacktestResult
    """
    if prices is None:
        prices = load_run_prices(config)
    check_test_period(config, prices.index)
    labels = run_labels(config, prices)
    result = walk_forward(
        prices, build_policies(config, prices=prices), labels.weights,
        test_start=config.test_start, test_end=config.test_end,
        retrain_every=config.retrain_every, train_window=config.train_window or None,
        purge=config.purge, execution=config.execution(), n_jobs=config.n_jobs,
        backend=config.backend, progress=progress,
    )
    result.config = replace(config).to_dict()
    result.config["assets"] = [str(c) for c in prices.columns]
    result.config["label_params"] = labels.params
    if out_dir is not None:
        result.save(out_dir)
    return result
