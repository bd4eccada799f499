"""Rolling optimal weights ("labels") the network learns to imitate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from neuralfolio._cache import fingerprint, read_frame, write_frame
from neuralfolio.data import require_history, simple_returns
from neuralfolio.optimize._minvar import MinVarianceQP
from neuralfolio.risk import rolling_ledoit_wolf

__all__ = ["LabelSet", "min_variance_labels"]


@dataclass
class LabelSet:
    """Optimal weights per date and what produced them.

    Attributes
    ----------
    weights : DataFrame, shape (n_dates, n_assets)
        Row ``t`` solves the problem on the window of returns ending at ``t`` (inclusive).
    params : dict
        Objective, window, covariance estimator and bounds.
    fingerprint : str
        Hash of the prices and params; the cache key.
    from_cache : bool
    """

    weights: pd.DataFrame
    params: dict[str, Any]
    fingerprint: str
    from_cache: bool = field(default=False)


def min_variance_labels(
    prices: pd.DataFrame,
    *,
    window: int = 126,
    lower: float = 0.0,
    upper: float = 1.0,
    cache_dir: str | Path | None = None,
) -> LabelSet:
    """Rolling minimum-variance weights with a Ledoit-Wolf covariance, free of look-ahead.

    Parameters
    ----------
    prices : DataFrame, shape (n_dates, n_assets)
        A validated price panel (:func:`neuralfolio.data.load_prices`).
    window : int
        Number of daily returns in each trailing window.
    lower, upper : float
        Bounds on each weight (``lower=0``: long-only).
    cache_dir : path, optional
        Where labels are cached as Parquet, keyed by a fingerprint of the prices and the
        parameters; the parameters are stored in the file's metadata.

    Returns
    -------
    LabelSet
        ``weights`` has shape (n_dates - window, n_assets); its first date is
        ``prices.index[window]``, the first with ``window`` returns behind it.
    """
    require_history(prices, window + 1, what=f"a label window of {window} returns")
    params = {
        "objective": "min_variance",
        "covariance": "ledoit_wolf",
        "window": int(window),
        "lower": float(lower),
        "upper": float(upper),
    }
    key = fingerprint(prices, params)
    path = Path(cache_dir) / f"labels-{key[:20]}.parquet" if cache_dir is not None else None
    if path is not None and path.exists():
        frame, meta = read_frame(path)
        if meta.get("fingerprint") == key:
            frame.columns.name = "asset"
            return LabelSet(frame, meta["params"], key, from_cache=True)

    covs = rolling_ledoit_wolf(simple_returns(prices).to_numpy(), window)
    weights = MinVarianceQP(prices.shape[1], lower=lower, upper=upper).solve_many(covs)
    frame = pd.DataFrame(weights, index=prices.index[window:], columns=prices.columns)
    if path is not None:
        write_frame(path, frame, {"fingerprint": key, "params": params})
    return LabelSet(frame, params, key)


