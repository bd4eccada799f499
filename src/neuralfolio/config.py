"""Run configuration: one object describes a walk-forward run and is saved beside it."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from neuralfolio.errors import ConfigError
from neuralfolio.nn._config import TrainConfig

__all__ = ["POLICY_NAMES", "RunConfig", "cache_dir"]

POLICY_NAMES: dict[str, str] = {
    "network": "Neural network on risk inputs (default features), re-trained periodically",
    "network_prices": "Neural network on today's prices (the course's formulation)",
    "optimizer_daily": "Minimum-variance optimizer re-solved every day (what the network imitates)",
    "optimizer_at_retrain": "Minimum-variance optimizer re-solved only at re-training dates",
    "equal_weight": "1/N, rebalanced daily",
}
"""Policies a run can include, with what they are."""


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
    max_fill : int
        Longest gap of missing prices forward-filled with a warning (see
        :func:`neuralfolio.data.validate_prices`).
    test_start, test_end : str
        Decision dates of the out-of-sample period; the dates before are the initial
        training period.
    window : int
        Returns per covariance window, for labels, risk inputs and optimizer policies.
    retrain_every : int
        Test dates between re-trainings.
    augment : int
        Synthetic covariance scenarios added to each training of the risk network.
    fine_tune : bool
        Re-training continues from the previous network.
    policies : list of str
        Names from :data:`POLICY_NAMES`.
    train : TrainConfig
    """

    data: str = "sp500"
    start: str | None = None
    end: str | None = None
    assets: list[str] | None = None
    max_fill: int = 5
    test_start: str = "2011-01-01"
    test_end: str | None = None
    window: int = 126
    retrain_every: int = 63
    augment: int = 20_000
    fine_tune: bool = True
    policies: list[str] = field(default_factory=lambda: list(POLICY_NAMES))
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            self.train = TrainConfig.from_dict(self.train)
        unknown = [p for p in self.policies if p not in POLICY_NAMES]
        if unknown:
            raise ConfigError(
                f"Unknown policy name(s) {unknown}; choose from {', '.join(POLICY_NAMES)}."
            )
        if not self.policies:
            raise ConfigError("policies is empty; name at least one policy to backtest.")
        for name in ("window", "retrain_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.augment < 0:
            raise ConfigError(f"augment must be >= 0, got {self.augment}.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"] = self.train.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"Unknown config field(s) {unknown}; known fields: {', '.join(sorted(known))}."
            )
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"Invalid config: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        """Read a TOML or JSON config file (keys as in :meth:`to_dict`)."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"Config file not found: {path}.")
        try:
            if path.suffix == ".toml":
                d = tomllib.loads(path.read_text())
            elif path.suffix == ".json":
                d = json.loads(path.read_text())
            else:
                raise ConfigError(f"{path}: config files are .toml or .json, not {path.suffix!r}.")
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from exc
        return cls.from_dict(d)
