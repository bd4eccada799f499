"""Price panels: loading, validation, bundled data sets and returns.

A price panel is a :class:`pandas.DataFrame` with a sorted, unique
:class:`~pandas.DatetimeIndex` (one row per trading day) and one column per asset
holding strictly positive prices. Long tables (one row per date and asset) are pivoted to
that shape by :func:`pivot_long_prices` (``load_prices(..., layout="long")``).
"""

from neuralfolio.data._datasets import DATASETS, Dataset, list_datasets, load_dataset
from neuralfolio.data._layout import pivot_long_prices
from neuralfolio.data._loaders import load_prices
from neuralfolio.data._synthetic import synthetic_prices
from neuralfolio.data._validate import (
    MAX_FILL_DEFAULT,
    require_history,
    simple_returns,
    validate_prices,
)

__all__ = [
    "DATASETS",
    "MAX_FILL_DEFAULT",
    "Dataset",
    "list_datasets",
    "load_dataset",
    "load_prices",
    "pivot_long_prices",
    "require_history",
    "simple_returns",
    "synthetic_prices",
    "validate_prices",
]
