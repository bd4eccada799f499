"""Models for the service: export a trained allocator into the registry, and re-train.

:func:`register_allocator` turns a fitted :class:`~neuralfolio.nn.NeuralAllocator` into a
registered :class:`~neuralfolio.scratch.runtime.NumpyAllocator` version whose metadata holds
what the service's checks need (the optimizer it imitates and the training distribution of
its inputs). :func:`retrain` trains a candidate on the latest data, scores it and the active
version on the same recent holdout (mean L1 to the optimizer's weights), and activates the
candidate only when it is not worse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from neuralfolio.errors import ConfigError, DataError
from neuralfolio.features import FeatureSpec, make_features
from neuralfolio.serve.registry import ModelRecord, ModelRegistry

__all__ = ["RetrainReport", "holdout_l1", "register_allocator", "retrain"]


def register_allocator(registry: ModelRegistry, allocator: Any, name: str,
                       train_prices: pd.DataFrame, *, objective: str = "min_variance",
                       window: int = 126, meta: dict[str, Any] | None = None) -> ModelRecord:
    """Export a fitted allocator to the registry as a new version of ``name``.

    Parameters
    ----------
    registry : ModelRegistry
    allocator : NeuralAllocator
        Fitted; dense or attention (see ``to_numpy_runtime``).
    name : str
    train_prices : DataFrame, shape (n_dates, n_assets)
        The prices it was trained on: the mean and deviation of its inputs over them are
        stored for the service's out-of-distribution check.
    objective, window : str, int
        The optimizer the service falls back to (and the gap monitor re-solves).
    meta : dict, optional
        More metadata (metrics, data source).
    """
    runtime = allocator.to_numpy_runtime()
    raw = make_features(train_prices, allocator.features).to_numpy()
    info = {
        "objective": objective, "window": int(window),
        "feature_mean": raw.mean(axis=0).tolist(), "feature_std": raw.std(axis=0).tolist(),
        "trained_on": [str(train_prices.index[0].date()), str(train_prices.index[-1].date())],
        **(meta or {}),
    }
    return registry.register(runtime, name, info)


def holdout_l1(runtime: Any, prices: pd.DataFrame, labels: pd.DataFrame,
               dates: pd.DatetimeIndex) -> float:
    """Mean L1 distance of a runtime's weights to the label weights on ``dates``."""
    raw = make_features(prices, runtime.features).loc[dates].to_numpy()
    w = runtime.predict_features(raw)
    return float(np.abs(w - labels.loc[dates].to_numpy()).sum(axis=1).mean())


@dataclass
class RetrainReport:
    """What :func:`retrain` did."""

    candidate: str
    candidate_l1: float
    active: str | None
    active_l1: float | None
    activated: bool
    holdout: tuple[str, str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def retrain(registry: ModelRegistry, prices: pd.DataFrame, *, name: str = "minvar",
            train: Any = None, window: int = 126, holdout: int = 126, augment: int = 20_000,
            tolerance: float = 0.0, activate: bool = True, progress: bool = False,
            ) -> RetrainReport:
    """Train a candidate on the latest data and activate it if it is not worse.

    The candidate learns the daily minimum-variance weights from risk inputs on every date
    but the last ``holdout``; it and the active version are scored on those last dates by
    their mean L1 distance to the optimizer's weights. The candidate is registered either
    way and activated when its L1 is at most ``(1 + tolerance)`` times the active one's (or
    when nothing is active, or the active model cannot read these assets).

    Parameters
    ----------
    registry : ModelRegistry
    prices : DataFrame, shape (n_dates, n_assets)
        Validated prices up to today.
    name : str
    train : TrainConfig, optional
        Default: the run default's imitation network (:data:`neuralfolio.config.
        DEFAULT_IMITATION`).
    window, holdout, augment : int
    tolerance : float
    activate : bool
        False registers the candidate without activating anything.
    progress : bool

    Returns
    -------
    RetrainReport
    """
    import time

    from neuralfolio.config import DEFAULT_IMITATION, cache_dir
    from neuralfolio.nn import NeuralAllocator, TrainConfig
    from neuralfolio.optimize import min_variance_labels

    t0 = time.perf_counter()
    if holdout < 5:
        raise ConfigError(f"holdout must be >= 5 dates, got {holdout}.")
    if len(prices) < window + holdout + 50:
        raise DataError(f"{len(prices)} price rows are too few to train on {window}-day "
                        f"windows and hold out {holdout} dates; give at least "
                        f"{window + holdout + 50}.")
    train = train or TrainConfig(**DEFAULT_IMITATION)
    labels = min_variance_labels(prices, window=window,
                                 cache_dir=cache_dir() / "labels").weights
    dates = labels.index[-holdout:]
    fit_prices = prices.loc[: labels.index[-holdout - 1]]
    spec = FeatureSpec("risk", window)
    model = NeuralAllocator(spec, train, augment=augment).fit(fit_prices, labels,
                                                               progress=progress)
    cand_l1 = holdout_l1(model.to_numpy_runtime(), prices, labels, dates)
    active = registry.active()
    active_l1 = None
    if active is not None:
        runtime = registry.load(active)
        if runtime.asset_agnostic or runtime.assets == [str(c) for c in prices.columns]:
            active_l1 = holdout_l1(runtime, prices, labels, dates)
    record = register_allocator(
        registry, model, name, fit_prices, window=window,
        meta={"metrics": {"holdout_l1": cand_l1, "holdout": [str(dates[0].date()),
                                                             str(dates[-1].date())]},
              "train": model.train.to_dict()})
    better = active_l1 is None or cand_l1 <= active_l1 * (1.0 + tolerance)
    if activate and better:
        registry.activate(record.name, record.version)
    return RetrainReport(record.label, cand_l1, None if active is None else active.label,
                         active_l1, bool(activate and better),
                         (str(dates[0].date()), str(dates[-1].date())),
                         time.perf_counter() - t0)
