"""Run configuration: one object describes a walk-forward run and is saved beside it."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from neuralfolio.errors import ConfigError
from neuralfolio.nn._config import TrainConfig, from_settings

__all__ = [
    "DEFAULT_IMITATION",
    "DEFAULT_OUTCOME",
    "DEFAULT_POLICIES",
    "POLICY_NAMES",
    "SKFOLIO_PREFIX",
    "RunConfig",
    "cache_dir",
    "read_config_file",
    "run_defaults",
    "with_defaults",
]

DEFAULT_IMITATION: dict[str, Any] = {
    "model": "attention", "model_options": {"d_model": 32}, "head": "simplex", "max_epochs": 40,
}
"""Settings of the imitation network of a run that differ from :class:`TrainConfig`'s."""

DEFAULT_OUTCOME: dict[str, Any] = {
    **DEFAULT_IMITATION, "loss": "variance", "horizon": 21,
    "head": "long_short", "head_options": {"gross_leverage": 1.5},
}
"""Settings of the outcome-trained network of a run that differ from :class:`TrainConfig`'s."""

POLICY_NAMES: dict[str, str] = {
    "network": "Neural network on risk inputs (default features), re-trained periodically",
    "network_prices": "Neural network on today's prices (the course's formulation)",
    "network_outcome": "Neural network trained on realized returns only (minimum realized "
                       "variance, no labels; long/short, gross leverage up to 1.5), "
                       "re-trained periodically",
    "optimizer_daily": "Minimum-variance optimizer re-solved every day (what the network imitates)",
    "optimizer_at_retrain": "Minimum-variance optimizer re-solved only at re-training dates",
    "equal_weight": "1/N, rebalanced by the run's rule",
    "inverse_volatility": "Weights proportional to 1 / volatility over the covariance window",
    "buy_and_hold": "1/N bought once at the start of the test, never rebalanced",
}
"""Policies a run can include, with what they are; ``skfolio:NAME`` adds the estimator NAME of
``skfolio.optimization`` (e.g. ``skfolio:HierarchicalRiskParity``) with default settings,
re-fitted on the covariance window at every date."""

DEFAULT_POLICIES = ["network", "network_prices", "network_outcome", "optimizer_daily",
                    "optimizer_at_retrain", "equal_weight", "inverse_volatility",
                    "buy_and_hold"]
"""Policies of a run that names none."""

SKFOLIO_PREFIX = "skfolio:"


def with_defaults(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` train settings over ``defaults``; a different ``model`` (``head``) drops the
    default ``model_options`` (``head_options``), which belong to the default one."""
    merged = {**defaults, **given}
    for part in ("model", "head"):
        options = f"{part}_options"
        if given.get(part, defaults.get(part)) != defaults.get(part) and options not in given:
            merged.pop(options, None)
    return merged


def run_defaults() -> dict[str, Any]:
    """The default value of each plain :class:`RunConfig` field (for help texts), without
    building a config."""
    return {f.name: f.default for f in fields(RunConfig) if f.default is not MISSING}


def cache_dir() -> Path:
    """Where labels are cached: ``$NEURALFOLIO_CACHE`` or ``~/.cache/neuralfolio``."""
    return Path(os.environ.get("NEURALFOLIO_CACHE", "~/.cache/neuralfolio")).expanduser()


@dataclass
class RunConfig:
    """Everything that determines a walk-forward run; with the seed it reproduces the run.

    Parameters
    ----------
    data : str
        Bundled data set name or path of a price file.
    start, end : str, optional
        Date range of the panel loaded.
    assets : list of str, optional
        Subset of columns.
    drop : list of str, optional
        Columns to leave out (e.g. a volume column of the price file).
    layout : {"auto", "wide", "long"}
        Layout of the price file (see :func:`neuralfolio.data.load_prices`).
    max_fill : int
        Longest gap of missing prices forward-filled with a warning (see
        :func:`neuralfolio.data.validate_prices`).
    test_start, test_end : str
        Decision dates of the out-of-sample period; the dates before are the initial
        training period.
    window : int
        Returns per covariance window, for labels, risk inputs and optimizer policies.
    retrain_every : int or str
        Test dates between re-trainings, or a calendar (``weekly``, ``monthly``,
        ``quarterly``, ``yearly``).
    train_window : int
        Price rows each (re-)training sees, ending at the re-training date (0: all the
        history, an expanding window).
    purge : int
        Dates left out between the training data and the re-training date.
    rebalance : str
        When holdings are traded back to the targets: ``daily``, ``weekly``, ``monthly``,
        ``quarterly``, ``threshold`` (see :data:`~neuralfolio.backtest.REBALANCE_RULES`).
    threshold : float
        Drift (sum of absolute weight differences) that triggers a ``threshold`` trade.
    cost_bps : float
        Transaction cost, basis points of the amount traded.
    fixed_cost : float
        Cost per order, as a fraction of the initial wealth (1.0).
    cash_rate : float
        Annual rate on cash (``1 - sum of weights``).
    benchmark : str
        Policy the tracking error and information ratio are measured against (when the
        run includes it).
    baselines : list of str
        Policies every other one is compared with by paired block bootstrap (those the
        run includes).
    n_jobs : int
        Walk-forward workers (-1: every core).
    backend : str, optional
        joblib backend of those workers (``loky``, ``threading``, ``ray``, ...).
    report_focus : list of str, optional
        ``[start, end, label]``: a window the report zooms into (weights of the network and
        the optimizer through it), e.g. ``["2008-08-01", "2008-11-28", "September 2008"]``.
    augment : int
        Synthetic covariance scenarios added to each training of the risk network.
    fine_tune : bool
        Re-training continues from the previous network.
    refit_epochs : int
        Most epochs of each fine-tuning (early stopping still applies).
    refit_augment : int
        Fresh synthetic scenarios at each fine-tuning of the risk network.
    refit_recent : int
        Dates of the newest data each fine-tuning trains on (0: all the history).
    policies : list of str
        Names from :data:`POLICY_NAMES`, or ``skfolio:NAME``.
    train : TrainConfig
        The imitation network's (``network``); ``network_prices`` uses it too.
    outcome_window : int
        Returns per covariance window of the outcome network's risk inputs (it learns from
        realized variance, where a longer memory pays).
    outcome_refit_recent : int
        As ``refit_recent``, for the outcome network (0: all the history; its loss is a
        noisy one and needs every date).
    outcome_train : TrainConfig
        The outcome-trained network's (``network_outcome``): by default it minimizes the
        variance of the returns realized over the ``horizon`` days after each decision,
        with a long/short head (fully invested, gross leverage at most 1.5).
    """

    data: str = "sp500"
    start: str | None = None
    end: str | None = None
    assets: list[str] | None = None
    drop: list[str] | None = None
    layout: str = "auto"
    max_fill: int = 5
    test_start: str = "2011-01-01"
    test_end: str | None = None
    window: int = 126
    retrain_every: int | str = 63
    train_window: int = 0
    purge: int = 0
    rebalance: str = "daily"
    threshold: float = 0.05
    cost_bps: float = 5.0
    fixed_cost: float = 0.0
    cash_rate: float = 0.0
    benchmark: str = "optimizer_daily"
    baselines: list[str] = field(default_factory=lambda: ["optimizer_daily", "equal_weight"])
    n_jobs: int = 1
    backend: str | None = None
    report_focus: list[str] | None = None
    augment: int = 20_000
    fine_tune: bool = True
    refit_epochs: int = 3
    refit_augment: int = 2_000
    refit_recent: int = 1008
    policies: list[str] = field(default_factory=lambda: list(DEFAULT_POLICIES))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**DEFAULT_IMITATION))
    outcome_window: int = 252
    outcome_refit_recent: int = 0
    outcome_train: TrainConfig = field(default_factory=lambda: TrainConfig(**DEFAULT_OUTCOME))

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            self.train = TrainConfig.from_dict(with_defaults(DEFAULT_IMITATION, self.train))
        if isinstance(self.outcome_train, dict):
            self.outcome_train = TrainConfig.from_dict(
                with_defaults(DEFAULT_OUTCOME, self.outcome_train))
        unknown = [p for p in self.policies
                   if p not in POLICY_NAMES and not p.startswith(SKFOLIO_PREFIX)]
        if unknown:
            raise ConfigError(
                f"Unknown policy name(s) {unknown}; choose from {', '.join(POLICY_NAMES)}, "
                f"or {SKFOLIO_PREFIX}NAME for a skfolio estimator."
            )
        if not self.policies:
            raise ConfigError("policies is empty; name at least one policy to backtest.")
        for name in ("window", "outcome_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        from neuralfolio.backtest import retrain_starts

        if isinstance(self.retrain_every, str) and self.retrain_every.strip().isdigit():
            self.retrain_every = int(self.retrain_every)

        retrain_starts(pd.DatetimeIndex([]), self.retrain_every)  # validates the schedule
        self.execution()  # validates rebalancing, costs and cash
        if self.train_window < 0 or self.purge < 0:
            raise ConfigError(f"train_window and purge must be >= 0 dates, got "
                              f"{self.train_window} and {self.purge}.")
        if self.report_focus is not None and len(self.report_focus) != 3:
            raise ConfigError(f"report_focus is [start, end, label], got {self.report_focus}.")
        odd = [n for n in (self.benchmark, *self.baselines)
               if n not in POLICY_NAMES and not n.startswith(SKFOLIO_PREFIX)]
        if odd:
            raise ConfigError(f"benchmark/baselines name unknown policies {odd}; choose from "
                              f"{', '.join(POLICY_NAMES)}.")
        if self.refit_epochs < 1 or min(self.refit_recent, self.outcome_refit_recent) < 0:
            raise ConfigError(
                f"refit_epochs must be >= 1 and refit_recent >= 0, got {self.refit_epochs} "
                f"and {self.refit_recent}.")
        if self.augment < 0 or self.refit_augment < 0:
            raise ConfigError(f"augment and refit_augment must be >= 0, got {self.augment} "
                              f"and {self.refit_augment}.")

    def execution(self) -> Any:
        """The run's :class:`~neuralfolio.backtest.Execution` (rebalancing, costs, cash)."""
        from neuralfolio.backtest import Execution

        return Execution(rebalance=self.rebalance, threshold=self.threshold,
                         cost_bps=self.cost_bps, fixed_cost=self.fixed_cost,
                         cash_rate=self.cash_rate)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"] = self.train.to_dict()
        d["outcome_train"] = self.outcome_train.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return from_settings(cls, d, "config field")

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        """Read a TOML, YAML or JSON config file (keys as in :meth:`to_dict`)."""
        return cls.from_dict(read_config_file(path))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file.

    Raises
    ------
    ConfigError
        Missing file, unknown suffix, a syntax error (with the parser's location) or a
        document that is not a mapping.
    """
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"Config file not found: {path}.")
    kind = {".toml": "TOML", ".json": "JSON", ".yaml": "YAML", ".yml": "YAML"}.get(path.suffix)
    if kind is None:
        raise ConfigError(
            f"{path}: config files are .toml, .yaml/.yml or .json, not {path.suffix!r}.")
    text = path.read_text()
    try:
        if kind == "TOML":
            d = tomllib.loads(text)
        elif kind == "JSON":
            d = json.loads(text)
        else:
            d = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {kind}: {exc}") from exc
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: the {kind} document must be a mapping of settings, "
                          f"got {type(d).__name__}.")
    return d
