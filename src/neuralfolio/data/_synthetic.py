"""A synthetic market: correlated log-normal prices from a one-factor model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuralfolio.errors import ConfigError

__all__ = ["synthetic_prices"]


def synthetic_prices(
    n_assets: int = 5,
    n_dates: int = 1000,
    *,
    seed: int = 0,
    start: str = "2000-01-03",
    annual_vol: tuple[float, float] = (0.15, 0.45),
    market_share: float = 0.4,
) -> pd.DataFrame:
    """Daily prices of assets driven by one market factor and their own noise.

    Parameters
    ----------
    n_assets, n_dates : int
    seed : int
    start : str
        First date; dates are business days.
    annual_vol : (float, float)
        Range of the assets' annualized volatilities (spread evenly).
    market_share : float
        Share of each asset's variance explained by the market factor, in [0, 1).

    Returns
    -------
    DataFrame, shape (n_dates, n_assets)
        Prices starting at 100, columns ``A0, A1, ...``.
    """
    if n_assets < 1 or n_dates < 2 or not 0.0 <= market_share < 1.0:
        raise ConfigError(
            "synthetic_prices needs n_assets >= 1, n_dates >= 2 and 0 <= market_share < 1; "
            f"got {n_assets}, {n_dates}, {market_share}."
        )
    rng = np.random.default_rng(seed)
    vol = np.linspace(*annual_vol, n_assets) / np.sqrt(252)
    market = rng.standard_normal((n_dates - 1, 1))
    own = rng.standard_normal((n_dates - 1, n_assets))
    shocks = np.sqrt(market_share) * market + np.sqrt(1.0 - market_share) * own
    log_returns = 0.0002 + vol * shocks - 0.5 * vol**2
    paths = 100.0 * np.exp(np.vstack([np.zeros(n_assets), np.cumsum(log_returns, axis=0)]))
    index = pd.bdate_range(start, periods=n_dates, name="date")
    return pd.DataFrame(paths, index=index, columns=pd.Index([f"A{i}" for i in range(n_assets)],
                                                             name="asset"))
