"""Validation of price panels and the missing-data policy.

Policy for missing values
-------------------------
* Gaps *inside* an asset's history of at most ``max_fill`` consecutive trading days are
  forward-filled (the last traded price is carried), with a :class:`DataWarning` that names
  the asset and the dates filled.
* Longer inside gaps, and missing values at the start or the end of an asset's history
  (asset not yet listed, or delisted), are refused with a :class:`DataError` that names the
  asset and the dates and says how to fix the panel. No asset or date is ever dropped
  silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable

import numpy as np
import pandas as pd

from neuralfolio.errors import DataError, DataWarning, InsufficientHistoryError

__all__ = ["MAX_FILL_DEFAULT", "require_history", "simple_returns", "validate_prices"]

MAX_FILL_DEFAULT = 5
"""Default longest run of missing prices (trading days) that is forward-filled."""

_MAX_LISTED = 5


def _fmt_dates(dates: pd.Index | list) -> str:
    dates = [pd.Timestamp(d).date().isoformat() for d in dates]
    if len(dates) > _MAX_LISTED:
        return ", ".join(dates[:_MAX_LISTED]) + f", ... ({len(dates)} in all)"
    return ", ".join(dates)


def _to_datetime_index(index: pd.Index, source: str) -> pd.DatetimeIndex:
    if isinstance(index, pd.DatetimeIndex):
        return index.copy()
    parsed = pd.to_datetime(pd.Series(index, dtype=object), errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = index[int(np.argmax(bad))]
        raise DataError(
            f"{source}: {int(bad.sum())} row label(s) are not dates, the first is {first!r}. "
            "The first column must hold dates (for example 2020-01-31), one row per trading day."
        )
    return pd.DatetimeIndex(parsed.to_numpy(), name=index.name)


def _numeric_column(col: pd.Series, asset: Hashable, source: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(col.dtype):
        raise DataError(
            f"{source}: column {asset!r} holds true/false values, not prices. "
            "Remove the column or replace it with prices."
        )
    if pd.api.types.is_numeric_dtype(col.dtype):
        return col.astype("float64")
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        date = bad.index[int(np.argmax(bad.to_numpy()))]
        raise DataError(
            f"{source}: column {asset!r} is not numeric: value {col[date]!r} on "
            f"{pd.Timestamp(date).date()} ({int(bad.sum())} non-numeric value(s) in all). "
            "Every asset column must hold prices; fix or remove those cells."
        )
    return converted.astype("float64")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Start and stop (exclusive) of each run of True in a boolean vector."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def validate_prices(
    prices: pd.DataFrame,
    *,
    source: str = "price panel",
    max_fill: int = MAX_FILL_DEFAULT,
) -> pd.DataFrame:
    """Check a wide price panel and return a clean float copy.

    Parameters
    ----------
    prices : DataFrame, shape (n_dates, n_assets)
        Prices with dates as the index (or parseable as dates) and one column per asset.
    source : str
        How to name the panel in messages (a file path, a data set name).
    max_fill : int
        Longest run of missing prices inside an asset's history that is forward-filled
        with a warning; longer runs raise.

    Returns
    -------
    DataFrame, shape (n_dates, n_assets)
        Float64 prices on a sorted, unique DatetimeIndex named ``date``; short gaps filled.

    Raises
    ------
    DataError
        Names the asset, date or file at fault and says what to do.
    """
    if not isinstance(prices, pd.DataFrame):
        raise DataError(
            f"{source}: expected a pandas DataFrame (dates x assets), got {type(prices).__name__}."
        )
    if prices.shape[1] == 0:
        raise DataError(f"{source}: no asset columns. Give one column of prices per asset.")
    if prices.shape[0] < 2:
        raise InsufficientHistoryError(
            f"{source}: {prices.shape[0]} row(s); a price panel needs at least two dates."
        )
    dup_cols = prices.columns[prices.columns.duplicated()].unique().tolist()
    if dup_cols:
        raise DataError(
            f"{source}: asset column(s) {dup_cols} appear more than once. "
            "Give each asset a single column."
        )
    if max_fill < 0:
        raise DataError(f"max_fill must be >= 0, got {max_fill}.")

    index = _to_datetime_index(prices.index, source)
    if index.has_duplicates:
        dups = index[index.duplicated()].unique()
        raise DataError(
            f"{source}: duplicate date(s) {_fmt_dates(dups)}. Keep one row per date "
            "(for example df[~df.index.duplicated(keep='last')])."
        )
    if not index.is_monotonic_increasing:
        pos = int(np.argmax(np.diff(index.asi8) < 0)) + 1
        raise DataError(
            f"{source}: dates are not in increasing order: {index[pos].date()} comes after "
            f"{index[pos - 1].date()}. Sort the rows by date (df.sort_index())."
        )

    clean = pd.DataFrame(
        {asset: _numeric_column(prices[asset], asset, source).to_numpy() for asset in prices},
        index=index,
    )
    clean.index.name = "date"
    clean.columns = pd.Index([str(c) for c in prices.columns], name="asset")
    values = clean.to_numpy()

    infinite = np.isinf(values)
    if infinite.any():
        i, j = np.argwhere(infinite)[0]
        raise DataError(
            f"{source}: asset {clean.columns[j]!r} has an infinite price on "
            f"{index[i].date()}. Fix or remove that cell."
        )
    nonpos = values <= 0
    if nonpos.any():
        i, j = np.argwhere(nonpos)[0]
        raise DataError(
            f"{source}: asset {clean.columns[j]!r} has a non-positive price "
            f"{float(values[i, j])} on {index[i].date()} "
            f"({int(nonpos[:, j].sum())} such value(s) for this asset). "
            "Prices must be > 0: give prices, not returns, and fix bad ticks."
        )

    missing = np.isnan(values)
    if missing.any():
        filled: list[str] = []
        for j, asset in enumerate(clean.columns):
            col_missing = missing[:, j]
            if not col_missing.any():
                continue
            if col_missing.all():
                raise DataError(
                    f"{source}: asset {asset!r} has no prices at all. Remove the column."
                )
            for start, stop in _runs(col_missing):
                gap = index[start:stop]
                if start == 0 or stop == len(index):
                    where = "before its first price" if start == 0 else "after its last price"
                    raise DataError(
                        f"{source}: asset {asset!r} has no prices {where} on "
                        f"{gap[0].date()}..{gap[-1].date()} ({stop - start} date(s)). "
                        "Choose a date range where every asset trades (start=/end=), or "
                        "leave the asset out explicitly (assets=[...])."
                    )
                if stop - start > max_fill:
                    raise DataError(
                        f"{source}: asset {asset!r} has {stop - start} missing prices in a row, "
                        f"{gap[0].date()}..{gap[-1].date()}, more than max_fill={max_fill}. "
                        "Fill the gap from another source, choose a date range without it, "
                        "or raise max_fill (--max-fill) if carrying the last price is acceptable."
                    )
                filled.append(f"{asset} on {_fmt_dates(gap)}")
        clean = clean.ffill()
        warnings.warn(
            f"{source}: forward-filled {len(filled)} short gap(s) (at most {max_fill} days): "
            + "; ".join(filled[:_MAX_LISTED])
            + (f"; ... ({len(filled)} in all)" if len(filled) > _MAX_LISTED else ""),
            DataWarning,
            stacklevel=2,
        )
    return clean


def require_history(prices: pd.DataFrame, needed: int, *, what: str) -> None:
    """Raise if ``prices`` has fewer than ``needed`` dates.

    Parameters
    ----------
    prices : DataFrame, shape (n_dates, n_assets)
    needed : int
        Minimum number of dates.
    what : str
        What needs them, for the message (for example ``"window=126 plus 250 training dates"``).
    """
    n = len(prices)
    if n < needed:
        span = f" ({prices.index[0].date()}..{prices.index[-1].date()})" if n else ""
        raise InsufficientHistoryError(
            f"Too little history: {n} dates{span}, but {what} needs at least {needed}. "
            "Load a longer price history or ask for shorter windows."
        )


def simple_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Daily simple returns ``p_t / p_{t-1} - 1``.

    Parameters
    ----------
    prices : DataFrame, shape (n_dates, n_assets)

    Returns
    -------
    DataFrame, shape (n_dates - 1, n_assets)
        The return on date t is realized from the close of t-1 to the close of t.
    """
    return prices.pct_change(fill_method=None).iloc[1:]
