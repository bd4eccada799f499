"""Bundled price data sets, read offline from the files skfolio ships."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from neuralfolio.errors import DataError

__all__ = ["DATASETS", "Dataset", "list_datasets", "load_dataset"]


def _sp500() -> pd.DataFrame:
    from skfolio.datasets import load_sp500_dataset

    return load_sp500_dataset()


def _factors() -> pd.DataFrame:
    from skfolio.datasets import load_factors_dataset

    return load_factors_dataset()


@dataclass(frozen=True)
class Dataset:
    """A named price panel that ships with the installation (nothing is downloaded).

    Attributes
    ----------
    name : str
    description : str
    loader : callable
        Returns the full panel the preset is cut from.
    assets : tuple of str, optional
        Columns kept; all when empty.
    start, end : str, optional
        Inclusive date range kept.
    """

    name: str
    description: str
    loader: Callable[[], pd.DataFrame] = field(repr=False)
    assets: tuple[str, ...] = ()
    start: str | None = None
    end: str | None = None

    def load(self) -> pd.DataFrame:
        """Return the raw panel, shape (n_dates, n_assets), before validation."""
        frame = self.loader()
        if self.assets:
            frame = frame.loc[:, list(self.assets)]
        return frame.loc[self.start : self.end]


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "sp500",
            "20 large US stocks, daily adjusted closes 1990-2022 (skfolio's bundled S&P 500 set)",
            _sp500,
        ),
        Dataset(
            "factors",
            "5 US factor ETFs (MTUM, QUAL, SIZE, USMV, VLUE), daily 2014-2022 (skfolio)",
            _factors,
        ),
        Dataset(
            "gfc",
            "Crisis case study, 2005-2010: banks BAC and JPM, GE (its finance arm GE Capital "
            "was a shadow bank hit by the 2008 funding freeze) and HD (the housing bust)",
            _sp500,
            assets=("BAC", "JPM", "GE", "HD"),
            start="2005-01-01",
            end="2010-12-31",
        ),
    )
}
"""The bundled data sets, by name."""


def list_datasets() -> list[Dataset]:
    """Return the bundled data sets in a stable order."""
    return list(DATASETS.values())


def load_dataset(name: str) -> pd.DataFrame:
    """Load a bundled data set by name, before validation.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS` (``sp500``, ``factors``, ``gfc``).

    Returns
    -------
    DataFrame, shape (n_dates, n_assets)
    """
    try:
        dataset = DATASETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"Unknown dataset {name!r}.{hint} Bundled data sets: {', '.join(DATASETS)} "
            "(see `neuralfolio data list`); or give the path of a CSV or Parquet file."
        ) from None
    return dataset.load()
