"""Covariance estimators: Ledoit-Wolf (batched NumPy) and rolling windows."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["ledoit_wolf", "rolling_ledoit_wolf"]


def ledoit_wolf(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ledoit-Wolf shrunk covariance, batched over leading axes.

    Shrinks the sample covariance towards ``mu * I`` (``mu`` the average variance) with the
    Ledoit-Wolf (2004) optimal intensity. Matches :func:`sklearn.covariance.ledoit_wolf`
    (with ``assume_centered=False``) to rounding, in plain NumPy and for many windows at once.

    Parameters
    ----------
    returns : ndarray, shape (..., n_obs, n_assets)
        One or a batch of return windows.

    Returns
    -------
    covariance : ndarray, shape (..., n_assets, n_assets)
    shrinkage : ndarray, shape (...)
        Shrinkage intensity in [0, 1].
    """
    x = np.asarray(returns, dtype=np.float64)
    n_obs, n_assets = x.shape[-2:]
    x = x - x.mean(axis=-2, keepdims=True)
    sample = np.matmul(np.swapaxes(x, -1, -2), x) / n_obs
    mu = np.trace(sample, axis1=-2, axis2=-1) / n_assets
    # beta: estimation noise of the sample covariance; delta: its distance to mu * I.
    row_norm2 = (x * x).sum(axis=-1)
    beta_sum = (row_norm2 * row_norm2).sum(axis=-1)
    delta_sum = (sample * sample).sum(axis=(-2, -1))
    beta = (beta_sum / n_obs - delta_sum) / (n_assets * n_obs)
    delta = (delta_sum - n_assets * mu**2) / n_assets
    beta = np.minimum(beta, delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        shrinkage = np.where(beta > 0, beta / np.where(delta > 0, delta, 1.0), 0.0)
    eye = np.eye(n_assets)
    s = shrinkage[..., None, None]
    covariance = (1.0 - s) * sample + s * mu[..., None, None] * eye
    return covariance, shrinkage


def rolling_ledoit_wolf(returns: np.ndarray, window: int, *, chunk: int = 512) -> np.ndarray:
    """Ledoit-Wolf covariance of every trailing window of returns.

    Parameters
    ----------
    returns : ndarray, shape (n_obs, n_assets)
    window : int
        Number of returns in each window.
    chunk : int
        Windows processed per batch (bounds memory).

    Returns
    -------
    ndarray, shape (n_obs - window + 1, n_assets, n_assets)
        Entry ``k`` is estimated from ``returns[k : k + window]``: it uses nothing after
        row ``k + window - 1``.
    """
    r = np.asarray(returns, dtype=np.float64)
    windows = sliding_window_view(r, window, axis=0)  # (n_windows, n_assets, window)
    out = np.empty((windows.shape[0], r.shape[1], r.shape[1]))
    for lo in range(0, windows.shape[0], chunk):
        block = np.swapaxes(windows[lo : lo + chunk], -1, -2)
        out[lo : lo + chunk] = ledoit_wolf(block)[0]
    return out
