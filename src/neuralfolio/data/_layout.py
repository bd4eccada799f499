"""Table layouts: finding the date column, and long tables pivoted to wide.

A *wide* table has one row per date and one column per asset. A *long* table has one row
per (date, asset) pair: a date column, an asset column (tickers) and a price column, often
with more columns such as Open, High, Low and Volume.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Hashable

import pandas as pd

from neuralfolio.data._validate import _is_number, _non_price_name, _to_datetime_index
from neuralfolio.errors import DataError

__all__ = ["pivot_long_prices"]

_DATE_NAMES = ("date", "datetime", "timestamp", "time")
_ASSET_NAMES = ("ticker", "symbol", "asset", "permno", "name")
# In order of preference: an adjusted close includes dividends and splits.
_VALUE_NAMES = (
    "adj close",
    "adjclose",
    "adjusted close",
    "close",
    "price",
    "prc",
    "value",
)


def _norm(name: Hashable) -> str:
    """``'Adj_Close'``, ``'adj. close'`` -> ``'adj close'``."""
    return " ".join(re.findall(r"[a-z0-9]+", str(name).lower()))


def _by_name(frame: pd.DataFrame, names: tuple[str, ...]) -> Hashable | None:
    """The first column whose normalized name is in ``names``, by order of ``names``."""
    normed = {_norm(c): c for c in reversed(frame.columns)}
    return next((normed[n] for n in names if n in normed), None)


def _looks_numeric(value: object) -> bool:
    """A number, or a string that reads as one (``"12.5"``, ``"12,5"``)."""
    if isinstance(value, str):
        try:
            float(value.strip().replace(",", "."))
        except ValueError:
            return False
        return True
    return _is_number(value)


def _is_text(col: pd.Series) -> bool:
    """Strings that are not all numbers (tickers, dates), as opposed to prices."""
    if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        return False
    values = col.dropna()
    return bool(len(values)) and not values.map(_looks_numeric).all()


def _parses_as_dates(col: pd.Series) -> bool:
    """Every value is a date; numbers never count (they would parse as 1970 offsets)."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return True
    values = col.dropna()
    if not _is_text(values) or values.map(_looks_numeric).any():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Could not infer format"
        try:
            parsed = pd.to_datetime(values, errors="coerce")
        except ValueError:  # different UTC offsets
            parsed = pd.to_datetime(values, errors="coerce", utc=True)
    return bool(parsed.notna().all())


def _date_column(table: pd.DataFrame) -> Hashable | None:
    """The first column if it holds dates, else one named like a date, else the first
    column that holds dates; None when there is none."""
    if not len(table.columns):
        return None
    first = table.columns[0]
    if _parses_as_dates(table[first]):
        return first
    named = _by_name(table, _DATE_NAMES)
    if named is not None:
        return named
    return next((c for c in table.columns[1:] if _parses_as_dates(table[c])), None)


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Every field as a column: a meaningful index (dates, a MultiIndex) is reset, unless
    its name is also a column's."""
    if isinstance(frame.index, pd.RangeIndex) or set(frame.index.names) & set(frame.columns):
        return frame
    return frame.reset_index()


def _is_row_number_column(name: Hashable, col: pd.Series) -> bool:
    """What ``DataFrame.to_csv`` writes for a default index: unnamed, 0, 1, 2, ..."""
    unnamed = str(name) == "" or re.fullmatch(r"Unnamed: \d+", str(name)) is not None
    return (
        unnamed
        and pd.api.types.is_integer_dtype(col.dtype)
        and col.is_monotonic_increasing
        and col.is_unique
    )


def _set_date_index(table: pd.DataFrame, *, fallback_first: bool) -> pd.DataFrame:
    """Make the date column the index of a flat wide table.

    A leading column of row numbers (a pandas index written to CSV) is dropped when a date
    column follows. Without any date column the first column becomes the index when
    ``fallback_first`` (validation then says it must hold dates), else the table is
    returned unchanged.
    """
    columns = list(table.columns)
    if (
        len(columns) > 1
        and _is_row_number_column(columns[0], table[columns[0]])
        and _date_column(table.iloc[:, 1:]) is not None
    ):
        table = table.iloc[:, 1:]
    date = _date_column(table)
    if date is None:
        if not fallback_first or not len(table.columns):
            return table
        date = table.columns[0]
    return table.set_index(date)


def _asset_column(table: pd.DataFrame, date: Hashable) -> Hashable | None:
    named = _by_name(table.drop(columns=[date]), _ASSET_NAMES)
    if named is not None:
        return named
    return next((c for c in table.columns if c != date and _is_text(table[c])), None)


def _value_column(table: pd.DataFrame, date: Hashable, asset: Hashable) -> Hashable | None:
    rest = table.drop(columns=[date, asset])
    named = _by_name(rest, _VALUE_NAMES)
    if named is not None:
        return named
    numeric = [
        c
        for c in rest.columns
        if pd.api.types.is_numeric_dtype(rest[c].dtype) and _non_price_name(str(c)) is None
    ]
    return numeric[0] if len(numeric) == 1 else None


def _refuse_long(table: pd.DataFrame, source: str, call: str) -> None:
    """Raise if a table meant to be wide is clearly long: a date column with repeated dates
    and a text column of repeated tickers. ``call`` is how the source is written in the
    suggested ``load_prices(...)`` call."""
    date = _date_column(table)
    if date is None or not table[date].duplicated().any():
        return
    asset = _asset_column(table, date)
    if asset is None or not table[asset].duplicated().any():
        return
    value = _value_column(table, date, asset)
    prices = f", prices in {value!r}" if value is not None else ""
    how = (
        f" Pivot it to one column per asset with load_prices({call}, layout='long') in "
        "Python, or --layout long in the CLI."
    )
    if value is None:
        how += (
            " Name the price column too: pivot_long_prices(df, value='...') in Python, or "
            f"rename it to one of {', '.join(_VALUE_NAMES)}."
        )
    raise DataError(
        f"{source}: this looks like a long table (one row per date and asset: dates in "
        f"{date!r}, assets in {asset!r}{prices}), not a wide one with a column per asset." + how
    )


def _pick(
    table: pd.DataFrame,
    given: Hashable | None,
    found: Hashable | None,
    keyword: str,
    what: str,
    source: str,
) -> Hashable:
    columns = ", ".join(map(str, table.columns))
    if given is not None:
        if given not in table.columns:
            raise DataError(f"{source}: no column {given!r} for the {what}. Columns: {columns}.")
        return given
    if found is None:
        raise DataError(
            f"{source}: cannot tell which column holds the {what}. Name it in Python, "
            f"pivot_long_prices(df, {keyword}='...'), or rename it. Columns: {columns}."
        )
    return found


def pivot_long_prices(
    frame: pd.DataFrame,
    *,
    date: Hashable | None = None,
    asset: Hashable | None = None,
    value: Hashable | None = None,
    source: str = "long table",
) -> pd.DataFrame:
    """Pivot a long price table (one row per date and asset) to a wide panel.

    Parameters
    ----------
    frame : DataFrame
        One row per (date, asset) pair. The dates may also be the index (or a level of it).
    date, asset, value : column name, optional
        The columns holding the dates, the asset names and the prices. When not given they
        are found by name (case and punctuation ignored): dates in ``date``, ``datetime``,
        ``timestamp`` or ``time`` (else the first column of dates); assets in ``ticker``,
        ``symbol``, ``asset``, ``permno`` or ``name`` (else the first text column); prices
        in ``adj close`` (preferred: it includes dividends and splits), ``close``,
        ``price``, ``prc`` or ``value``, else the only other numeric column that is not named
        like a volume or count. Other columns
        (Open, High, Volume, ...) are left out.
    source : str
        How to name the table in messages.

    Returns
    -------
    DataFrame, shape (n_dates, n_assets)
        Sorted dates as the index, one column per asset in order of first appearance;
        NaN where an asset has no row for a date. Not yet validated: pass it to
        :func:`validate_prices` or :func:`load_prices`.

    Raises
    ------
    DataError
        A column is missing or cannot be found, a date does not parse, an asset name is
        blank, or a (date, asset) pair appears more than once (the pairs are named).

    Examples
    --------
    >>> long = pd.DataFrame({"Date": ["2020-01-02", "2020-01-02", "2020-01-03", "2020-01-03"],
    ...                      "Ticker": ["A", "B", "A", "B"], "Close": [10.0, 20.0, 11.0, 21.0]})
    >>> wide = pivot_long_prices(long)
    >>> [d.date().isoformat() for d in wide.index], wide.to_dict("list")
    (['2020-01-02', '2020-01-03'], {'A': [10.0, 11.0], 'B': [20.0, 21.0]})
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}.")
    table = _flat(frame)
    date = _pick(table, date, _date_column(table), "date", "dates", source)
    asset = _pick(table, asset, _asset_column(table, date), "asset", "asset names", source)
    value = _pick(table, value, _value_column(table, date, asset), "value", "prices", source)
    dates = _to_datetime_index(pd.Index(table[date]), source, where=f"The date column {date!r}")
    names = table[asset]
    if names.isna().any():
        raise DataError(
            f"{source}: {int(names.isna().sum())} row(s) have no asset name in {asset!r}. "
            "Fill in or remove those rows."
        )
    long = pd.DataFrame(
        {"date": dates, "asset": names.astype(str).to_numpy(), "value": table[value].to_numpy()}
    )
    dup = long.duplicated(["date", "asset"], keep=False)
    if dup.any():
        pairs = long.loc[dup, ["date", "asset"]].drop_duplicates()
        shown = "; ".join(f"{d.date()} {a}" for d, a in pairs.head(5).itertuples(index=False))
        more = f"; ... ({len(pairs)} in all)" if len(pairs) > 5 else ""
        raise DataError(
            f"{source}: {len(pairs)} (date, asset) pair(s) appear more than once: "
            f"{shown}{more}. Keep one row per date and asset."
        )
    # pivot, not pivot_table: nothing is aggregated, duplicates were refused above.
    wide = long.pivot(index="date", columns="asset", values="value")  # noqa: PD010
    wide = wide.loc[:, list(pd.unique(long["asset"]))]
    wide.columns.name = "asset"
    return wide
