"""Synthetic covariance scenarios with their optimal weights, for training data augmentation.

A network trained only on the rolling windows of one history sees a few thousand heavily
overlapping covariances. Scenarios add many more, each one still built from returns that
were observed in the training period (so nothing from the test period leaks in):

* **block bootstrap**: a window is stitched from random blocks of consecutive training days;
* **volatility shocks**: each asset's returns in a scenario are scaled by ``exp(N(0, s))``,
  moving the relative risk of the assets beyond what history happened to show;
* **regime blends**: a share of scenarios mixes two bootstrapped covariances,
  ``a * S1 + (1 - a) * S2`` with ``a ~ U(0, 1)``, between the regimes the blocks came from;
* **common-factor shocks**: a share of scenarios moves every correlation towards one (a
  crisis, where everything moves together) or towards zero, by ``rho ~ U(-f, f)``, keeping
  the volatilities.
"""

from __future__ import annotations

import numpy as np

from neuralfolio.errors import ConfigError, InsufficientHistoryError
from neuralfolio.optimize._objectives import Constraints, PortfolioSolver
from neuralfolio.optimize._parallel import chunk_bounds, parallel_chunks
from neuralfolio.risk import ledoit_wolf

__all__ = ["COVARIANCE_ONLY", "bootstrap_covariances", "scenario_labels",
           "scenario_training_set"]

COVARIANCE_ONLY: tuple[str, ...] = ("min_variance", "risk_parity", "max_diversification")
"""Objectives whose solution depends on the covariance alone, so scenarios can be labelled."""


def _factor_shock(covs: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Move correlations towards one (rho > 0) or zero (rho < 0); keeps them valid."""
    vol = np.sqrt(np.diagonal(covs, axis1=-2, axis2=-1))
    corr = covs / (vol[:, :, None] * vol[:, None, :])
    n = covs.shape[-1]
    target = np.where(rho[:, None, None] > 0, np.ones((n, n)), np.eye(n))
    a = np.abs(rho)[:, None, None]
    corr = (1.0 - a) * corr + a * target
    return corr * vol[:, :, None] * vol[:, None, :]


def bootstrap_covariances(
    returns: np.ndarray,
    n_scenarios: int,
    *,
    window: int = 126,
    block: int = 21,
    vol_shock: float = 0.25,
    blend_share: float = 0.0,
    factor_share: float = 0.0,
    factor_shock: float = 0.5,
    seed: int = 0,
    chunk: int = 1024,
) -> np.ndarray:
    """Ledoit-Wolf covariances of bootstrapped, shocked and blended training windows.

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
    blend_share : float
        Share of scenarios that blend two bootstrapped covariances.
    factor_share : float
        Share of scenarios given a common-factor (correlation) shock.
    factor_shock : float
        Largest correlation move ``f`` of a factor shock, in [0, 1].
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
    for name, value in (("blend_share", blend_share), ("factor_share", factor_share),
                        ("factor_shock", factor_shock)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {value}.")
    if len(r) < max(block, window):
        raise InsufficientHistoryError(
            f"Scenario bootstrap needs at least {max(block, window)} training returns, "
            f"got {len(r)}. Use a longer training period or a shorter window."
        )
    rng = np.random.default_rng(seed)
    n_blocks = -(-window // block)

    def draw(m: int) -> np.ndarray:
        starts = rng.integers(0, len(r) - block + 1, size=(m, n_blocks))
        idx = (starts[:, :, None] + np.arange(block)).reshape(m, -1)[:, :window]
        windows = r[idx]
        if vol_shock > 0:
            windows = windows * np.exp(rng.normal(0.0, vol_shock, size=(m, 1, r.shape[1])))
        return ledoit_wolf(windows)[0]

    out = np.empty((n_scenarios, r.shape[1], r.shape[1]))
    for lo in range(0, n_scenarios, chunk):
        m = min(chunk, n_scenarios - lo)
        covs = draw(m)
        blend = rng.random(m) < blend_share
        if blend.any():
            a = rng.random(int(blend.sum()))[:, None, None]
            covs[blend] = a * covs[blend] + (1.0 - a) * draw(int(blend.sum()))
        shock = rng.random(m) < factor_share
        if shock.any():
            rho = rng.uniform(-factor_shock, factor_shock, int(shock.sum()))
            covs[shock] = _factor_shock(covs[shock], rho)
        out[lo : lo + m] = covs
    return out


def _solve_scenarios(objective: str, constraints: Constraints, options: dict[str, float],
                     covariances: np.ndarray) -> np.ndarray:
    solver = PortfolioSolver(objective, covariances.shape[-1], constraints, **options)
    dummy = np.zeros((2, covariances.shape[-1]))  # these objectives read only the covariance
    return np.stack([solver.solve(dummy, c) for c in covariances])


def scenario_labels(
    returns: np.ndarray,
    n_scenarios: int,
    *,
    window: int = 126,
    objective: str = "min_variance",
    constraints: Constraints | None = None,
    lower: float = 0.0,
    upper: float = 1.0,
    seed: int = 0,
    n_jobs: int = 1,
    backend: str | None = None,
    progress: bool = False,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Scenario covariances and their optimal weights.

    Parameters
    ----------
    returns : ndarray, shape (n_obs, n_assets)
        Training-period returns.
    n_scenarios, window, seed
        See :func:`bootstrap_covariances` (its other options pass through ``kwargs``).
    objective : {"min_variance", "risk_parity", "max_diversification"}
        Objectives that depend on the covariance only.
    constraints : Constraints, optional
        Defaults to ``Constraints(lower, upper)``.
    n_jobs, backend, progress
        Parallel solving, as in :func:`~neuralfolio.optimize.rolling_labels`.

    Returns
    -------
    covariances : ndarray, shape (n_scenarios, n_assets, n_assets)
    weights : ndarray, shape (n_scenarios, n_assets)
    """
    if objective not in COVARIANCE_ONLY:
        raise ConfigError(
            f"Scenarios are covariances only, so they have labels for objectives that need "
            f"nothing else ({', '.join(COVARIANCE_ONLY)}), not {objective!r}."
        )
    covs = bootstrap_covariances(returns, n_scenarios, window=window, seed=seed, **kwargs)
    constraints = constraints or Constraints(lower, upper)
    tasks = [(objective, constraints, {}, covs[lo:hi])
             for lo, hi in chunk_bounds(len(covs), n_jobs)]
    if not tasks:
        return covs, np.empty((0, covs.shape[-1]))
    parts = parallel_chunks(_solve_scenarios, tasks, n_jobs=n_jobs, backend=backend,
                            progress=progress, description=f"scenarios ({objective})")
    return covs, np.concatenate(parts)


def scenario_training_set(
    returns: np.ndarray, n_scenarios: int, *, window: int = 126, unconstrained: bool = True,
    **kwargs
) -> tuple[np.ndarray, np.ndarray]:
    """Scenarios as rows ready for the trainer: risk inputs and their optimal weights.

    Parameters
    ----------
    returns : ndarray, shape (n_obs, n_assets)
        Training-period returns only.
    n_scenarios, window, kwargs
        As in :func:`scenario_labels`.
    unconstrained : bool
        Append the unconstrained minimum-variance weights, as ``FeatureSpec.unconstrained``.

    Returns
    -------
    features : ndarray, shape (n_scenarios, n_features)
        :func:`neuralfolio.features.covariance_features` of each scenario (unscaled).
    weights : ndarray, shape (n_scenarios, n_assets)
    """
    from neuralfolio.features import covariance_features

    covs, weights = scenario_labels(returns, n_scenarios, window=window, **kwargs)
    return covariance_features(covs, unconstrained), weights
