"""Covariance estimators: sample, Ledoit-Wolf (batched NumPy) and EWMA (incremental).

``rolling_covariances`` gives the estimate behind every date of a panel from data up to
that date only; the label generator, the risk inputs and the optimizer policies share it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from neuralfolio.errors import ConfigError, InsufficientHistoryError

__all__ = [
    "COVARIANCE_ESTIMATORS",
    "EWMACovariance",
    "ledoit_wolf",
    "rolling_covariances",
    "rolling_ledoit_wolf",
    "sample_covariance",
]

COVARIANCE_ESTIMATORS: tuple[str, ...] = ("ledoit_wolf", "sample", "ewma")
"""Names accepted by :func:`rolling_covariances`."""


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
    if n_assets == 1:  # nothing to shrink (scikit-learn's convention)
        shrinkage = np.zeros_like(shrinkage)
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
    return _rolling(returns, window, lambda block: ledoit_wolf(block)[0], chunk)


def _rolling(returns: np.ndarray, window: int, estimator, chunk: int = 512) -> np.ndarray:
    """Apply a batched estimator to every trailing window, a chunk of windows at a time."""
    r = np.asarray(returns, dtype=np.float64)
    windows = sliding_window_view(r, window, axis=0)  # (n_windows, n_assets, window)
    out = np.empty((windows.shape[0], r.shape[1], r.shape[1]))
    for lo in range(0, windows.shape[0], chunk):
        out[lo : lo + chunk] = estimator(np.swapaxes(windows[lo : lo + chunk], -1, -2))
    return out


def sample_covariance(returns: np.ndarray) -> np.ndarray:
    """Unbiased sample covariance (``ddof=1``, as skfolio's ``EmpiricalCovariance``), batched.

    Parameters
    ----------
    returns : ndarray, shape (..., n_obs, n_assets)

    Returns
    -------
    ndarray, shape (..., n_assets, n_assets)
    """
    x = np.asarray(returns, dtype=np.float64)
    x = x - x.mean(axis=-2, keepdims=True)
    return np.matmul(np.swapaxes(x, -1, -2), x) / (x.shape[-2] - 1)


class EWMACovariance:
    """Exponentially weighted covariance with an O(n_assets^2) one-step update.

    ``S_t = decay * S_(t-1) + (1 - decay) * r_t r_t'`` (RiskMetrics, zero mean), started from
    the sample covariance of the first ``warmup`` returns.

    Parameters
    ----------
    decay : float
        Weight of the previous estimate, in (0, 1); 0.94 is RiskMetrics' daily value.
    warmup : int
        Returns used for the starting estimate.

    Attributes
    ----------
    covariance_ : ndarray, shape (n_assets, n_assets)
    n_updates_ : int
    """

    def __init__(self, decay: float = 0.94, warmup: int = 20) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"EWMA decay must be in (0, 1), got {decay}.")
        if warmup < 2:
            raise ConfigError(f"EWMA warmup must be >= 2 returns, got {warmup}.")
        self.decay = decay
        self.warmup = warmup

    def fit(self, returns: np.ndarray) -> EWMACovariance:
        """Start from the first ``warmup`` rows, then update with each later row.

        Parameters
        ----------
        returns : ndarray, shape (n_obs, n_assets), n_obs >= warmup
        """
        r = np.asarray(returns, dtype=np.float64)
        if len(r) < self.warmup:
            raise InsufficientHistoryError(
                f"EWMA covariance needs at least warmup={self.warmup} returns, got {len(r)}."
            )
        self.covariance_ = sample_covariance(r[: self.warmup])
        self.n_updates_ = 0
        for row in r[self.warmup :]:
            self.update(row)
        return self

    def update(self, returns: np.ndarray) -> np.ndarray:
        """Fold in one day of returns, shape (n_assets,); returns the new covariance."""
        r = np.asarray(returns, dtype=np.float64)
        cov = self.covariance_
        cov *= self.decay
        cov += (1.0 - self.decay) * np.outer(r, r)
        self.n_updates_ += 1
        return cov


def rolling_covariances(
    returns: np.ndarray,
    window: int,
    method: str = "ledoit_wolf",
    *,
    decay: float = 0.94,
) -> np.ndarray:
    """The covariance estimate at the end of every trailing window.

    Parameters
    ----------
    returns : ndarray, shape (n_obs, n_assets)
    window : int
        Returns per window (``sample``, ``ledoit_wolf``); for ``ewma`` the first window
        starts the estimate, which then runs over all later returns.
    method : {"ledoit_wolf", "sample", "ewma"}
    decay : float
        EWMA decay.

    Returns
    -------
    ndarray, shape (n_obs - window + 1, n_assets, n_assets)
        Entry ``k`` uses ``returns[: k + window]`` only.
    """
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < window:
        raise InsufficientHistoryError(
            f"{len(r)} returns, but a covariance window of {window} needs at least {window}."
        )
    if method == "ledoit_wolf":
        return rolling_ledoit_wolf(r, window)
    if method == "sample":
        return _rolling(r, window, sample_covariance)
    if method == "ewma":
        est = EWMACovariance(decay, warmup=window).fit(r[:window])
        out = np.empty((len(r) - window + 1, r.shape[1], r.shape[1]))
        out[0] = est.covariance_
        for k, row in enumerate(r[window:], start=1):
            out[k] = est.update(row)
        return out
    raise ConfigError(
        f"Unknown covariance estimator {method!r}; choose one of "
        f"{', '.join(COVARIANCE_ESTIMATORS)}."
    )
