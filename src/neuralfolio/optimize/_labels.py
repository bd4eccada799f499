"""Rolling optimal weights ("labels") the network learns to imitate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from neuralfolio._cache import fingerprint, read_frame, write_frame
from neuralfolio.data import require_history, simple_returns
from neuralfolio.optimize._objectives import Constraints, PortfolioSolver
from neuralfolio.optimize._parallel import chunk_bounds, parallel_chunks
from neuralfolio.risk import rolling_covariances

__all__ = ["LabelSet", "min_variance_labels", "rolling_labels"]


@dataclass
class LabelSet:
    """Optimal weights per date and what produced them.

    Attributes
    ----------
    weights : DataFrame, shape (n_dates, n_assets)
        Row ``t`` solves the problem on the window of returns ending at ``t`` (inclusive).
    params : dict
        Objective, window, covariance estimator, constraints and objective parameters.
    fingerprint : str
        Hash of the prices and params; the cache key.
    from_cache : bool
    n_fallbacks : int
        Dates where ``max_sharpe`` fell back to minimum variance (no positive mean).
    """

    weights: pd.DataFrame
    params: dict[str, Any]
    fingerprint: str
    from_cache: bool = field(default=False)
    n_fallbacks: int = 0


def _solve_chunk(objective: str, constraints: Constraints, options: dict[str, float],
                 returns: np.ndarray, covariances: np.ndarray, window: int
                 ) -> tuple[np.ndarray, int]:
    """Labels for consecutive windows; ``returns`` spans them all (warm starts in order)."""
    solver = PortfolioSolver(objective, returns.shape[1], constraints, **options)
    windows = np.swapaxes(sliding_window_view(returns, window, axis=0), -1, -2)
    weights = np.stack([solver.solve(w, c) for w, c in zip(windows, covariances, strict=True)])
    return weights, solver.n_fallbacks_


def rolling_labels(
    prices: pd.DataFrame,
    *,
    objective: str = "min_variance",
    window: int = 126,
    cov: str = "ledoit_wolf",
    constraints: Constraints | None = None,
    risk_aversion: float = 1.0,
    cvar_beta: float = 0.95,
    n_jobs: int = 1,
    backend: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> LabelSet:
    """Rolling optimal weights for every date with a full window behind it, no look-ahead.

    Parameters
    ----------
    prices : DataFrame, shape (n_dates, n_assets)
        A validated price panel (:func:`neuralfolio.data.load_prices`).
    objective : str
        One of :data:`~neuralfolio.optimize.OBJECTIVES`.
    window : int
        Daily returns in each trailing window (EWMA: the returns that start the estimate).
    cov : {"ledoit_wolf", "sample", "ewma"}
        Covariance estimator (:func:`neuralfolio.risk.rolling_covariances`).
    constraints : Constraints, optional
        Long-only, fully invested by default.
    risk_aversion, cvar_beta : float
        Parameters of ``mean_variance`` and ``min_cvar``.
    n_jobs : int
        Workers for the windows (-1: all cores); each works through a contiguous chunk,
        warm-starting along it.
    backend : str, optional
        joblib backend (``"loky"``, ``"threading"``, or a cluster engine registered with
        joblib such as ``"ray"`` or ``"dask"``).
    cache_dir : path, optional
        Where labels are cached as Parquet, keyed by a fingerprint of the prices and the
        parameters; the parameters are stored in the file's metadata.
    progress : bool
        Show a progress bar.

    Returns
    -------
    LabelSet
        ``weights`` has shape (n_dates - window, n_assets); its first date is
        ``prices.index[window]``.
    """
    require_history(prices, window + 1, what=f"a label window of {window} returns")
    constraints = constraints or Constraints()
    params = {
        "objective": objective,
        "covariance": cov,
        "window": int(window),
        "constraints": constraints.to_dict(),
        "risk_aversion": float(risk_aversion),
        "cvar_beta": float(cvar_beta),
    }
    PortfolioSolver(objective, prices.shape[1], constraints, risk_aversion=risk_aversion,
                    cvar_beta=cvar_beta)  # fail fast on bad parameters, before any work
    key = fingerprint(prices, params)
    path = Path(cache_dir) / f"labels-{key[:20]}.parquet" if cache_dir is not None else None
    if path is not None and path.exists():
        frame, meta = read_frame(path)
        if meta.get("fingerprint") == key:
            frame.columns.name = "asset"
            return LabelSet(frame, meta["params"], key, from_cache=True,
                            n_fallbacks=int(meta.get("n_fallbacks", 0)))

    returns = simple_returns(prices).to_numpy()
    covs = rolling_covariances(returns, window, cov)
    options = {"risk_aversion": risk_aversion, "cvar_beta": cvar_beta}
    tasks = [(objective, constraints, options, returns[lo : hi + window - 1], covs[lo:hi],
              window) for lo, hi in chunk_bounds(len(covs), n_jobs)]
    parts = parallel_chunks(_solve_chunk, tasks, n_jobs=n_jobs, backend=backend,
                            progress=progress, description=f"labels ({objective})")
    weights = np.concatenate([w for w, _ in parts])
    n_fallbacks = sum(n for _, n in parts)
    frame = pd.DataFrame(weights, index=prices.index[window:], columns=prices.columns)
    if path is not None:
        write_frame(path, frame, {"fingerprint": key, "params": params,
                                  "n_fallbacks": n_fallbacks})
    return LabelSet(frame, params, key, n_fallbacks=n_fallbacks)


def min_variance_labels(
    prices: pd.DataFrame,
    *,
    window: int = 126,
    lower: float = 0.0,
    upper: float = 1.0,
    cache_dir: str | Path | None = None,
    n_jobs: int = 1,
) -> LabelSet:
    """Rolling minimum-variance weights with a Ledoit-Wolf covariance (see
    :func:`rolling_labels`)."""
    return rolling_labels(prices, objective="min_variance", window=window, cov="ledoit_wolf",
                          constraints=Constraints(lower, upper), cache_dir=cache_dir,
                          n_jobs=n_jobs)
