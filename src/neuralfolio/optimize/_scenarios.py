"""Synthetic covariance scenarios with their optimal weights, for training data augmentation.

A network trained only on the rolling windows of one history sees a few thousand heavily
overlapping covariances. Scenarios add many more, each one still built from returns that
were observed in the training period (so nothing from the test period leaks in):

* **block bootstrap**: a window is stitched from random blocks of consecutive training days;
* **volatility shocks**: each asset's returns in a scenario are scaled by ``exp(N(0, s))``,
  moving the relative risk of the assets beyond what history happened to show.
"""

from __future__ import annotations

import numpy as np

from neuralfolio.errors import ConfigError, InsufficientHistoryError
from neuralfolio.optimize._minvar import MinVarianceQP
from neuralfolio.risk import ledoit_wolf

__all__ = ["bootstrap_covariances", "scenario_labels"]


def bootstrap_covariances(
    returns: np.ndarray,
    n_scenarios: int,
    *,
    window: int = 126,
    block: int = 21,
    vol_shock: float = 0.25,
    seed: int = 0,
    chunk: int = 1024,
) -> np.ndarray:
    """Ledoit-Wolf covariances of block-bootstrapped, volatility-shocked return windows.

    Parameters
    ----------
    returns : ndarray, shape (n_obs, n_assets)
        Daily returns of the training period only.
    n_scenarios : int
    window : int
        Returns per scenario window.
    block : int
        Length of each block of consecutive days.
    vol_shock : float
        Standard deviation of the log scale applied to each asset's returns.
    seed : int

    Returns
    -------
    ndarray, shape (n_scenarios, n_assets, n_assets)
    """
    r = np.asarray(returns, dtype=np.float64)
    if n_scenarios < 0 or block < 1 or window < 2 or vol_shock < 0:
        raise ConfigError(
            "Need n_scenarios >= 0, block >= 1, window >= 2 and vol_shock >= 0; got "
            f"{n_scenarios}, {block}, {window}, {vol_shock}."
        )
    if len(r) < max(block, window):
        raise InsufficientHistoryError(
            f"Scenario bootstrap needs at least {max(block, window)} training returns, "
            f"got {len(r)}. Use a longer training period or a shorter window."
        )
    rng = np.random.default_rng(seed)
    n_blocks = -(-window // block)
    out = np.empty((n_scenarios, r.shape[1], r.shape[1]))
    for lo in range(0, n_scenarios, chunk):
        m = min(chunk, n_scenarios - lo)
        starts = rng.integers(0, len(r) - block + 1, size=(m, n_blocks))
        idx = (starts[:, :, None] + np.arange(block)).reshape(m, -1)[:, :window]
        windows = r[idx]
        if vol_shock > 0:
            windows = windows * np.exp(rng.normal(0.0, vol_shock, size=(m, 1, r.shape[1])))
        out[lo : lo + m] = ledoit_wolf(windows)[0]
    return out


def scenario_labels(
    returns: np.ndarray,
    n_scenarios: int,
    *,
    window: int = 126,
    lower: float = 0.0,
    upper: float = 1.0,
    seed: int = 0,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Scenario covariances and their minimum-variance weights.

    Parameters
    ----------
    returns : ndarray, shape (n_obs, n_assets)
        Training-period returns.
    n_scenarios, window, seed
        See :func:`bootstrap_covariances` (``block`` and ``vol_shock`` pass through).
    lower, upper : float
        Weight bounds of the minimum-variance problem.

    Returns
    -------
    covariances : ndarray, shape (n_scenarios, n_assets, n_assets)
    weights : ndarray, shape (n_scenarios, n_assets)
    """
    covs = bootstrap_covariances(returns, n_scenarios, window=window, seed=seed, **kwargs)
    qp = MinVarianceQP(covs.shape[-1], lower=lower, upper=upper)
    return covs, qp.solve_many(covs)
