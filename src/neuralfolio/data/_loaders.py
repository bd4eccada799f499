"""Loading price panels from a bundled name, a CSV or Parquet file, or a DataFrame."""

from __future__ import annotations

import csv
import gzip
import itertools
import re
from collections import Counter
from pathlib import Path
from typing import Literal

import pandas as pd

from neuralfolio.data._datasets import DATASETS, load_dataset
from neuralfolio.data._layout import (
    _DATE_NAMES,
    _flat,
    _norm,
    _refuse_long,
    _set_date_index,
    pivot_long_prices,
)
from neuralfolio.data._validate import (
    MAX_FILL_DEFAULT,
    _to_datetime_index,
    drop_blank_rows,
    validate_prices,
)
from neuralfolio.errors import DataError

__all__ = ["load_prices", "read_price_file"]

_CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_SEPARATORS = ",;\t|"
_SNIFF_LINES = 50
_LAYOUTS = ("auto", "wide", "long")

PriceSource = str | Path | pd.DataFrame
Layout = Literal["auto", "wide", "long"]


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    return None


def _head(path: Path) -> list[str]:
    """The first non-blank lines of a text file, for sniffing its format."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
        lines = (line for line in fh if line.strip())
        return list(itertools.islice(lines, _SNIFF_LINES))


def _read_csv(path: Path) -> pd.DataFrame:
    """Read a delimited text file as a flat table (no index), detecting its format.

    The separator (comma, semicolon, tab or bar) is sniffed from the first lines; with a
    separator other than a comma, cells such as ``12,5`` mean a decimal comma. Duplicate
    column names are refused from the raw header, before pandas renames them ``BAC.1``.
    """
    lines = _head(path)
    default = "\t" if path.name.lower().endswith(".tsv") else ","
    try:
        sep = csv.Sniffer().sniff("".join(lines), delimiters=_SEPARATORS).delimiter
    except csv.Error:
        sep = default
    header = next(csv.reader(lines[:1], delimiter=sep), [])
    dups = [n for n, k in Counter(h.strip() for h in header).items() if k > 1 and n]
    if dups:
        raise DataError(
            f"{path}: column name(s) {dups} appear more than once in the header (pandas "
            f"would silently rename the copies {dups[0]}.1, ...). Give each asset a single "
            "column: delete or rename the duplicates in the file."
        )
    cells = [c.strip() for row in csv.reader(lines[1:], delimiter=sep) for c in row]
    comma = any(re.fullmatch(r"[-+]?\d+,\d+", c) for c in cells)
    point = any(re.fullmatch(r"[-+]?\d*\.\d+", c) for c in cells)
    return pd.read_csv(path, sep=sep, decimal="," if sep != "," and comma and not point else ".")


def _to_wide(table: pd.DataFrame, layout: str, source: str, call: str) -> pd.DataFrame:
    """A flat table (every field a column) as a wide frame indexed by its date column."""
    if layout == "long":
        return pivot_long_prices(table, source=source)
    if layout == "auto":
        _refuse_long(table, source, call)
    return _set_date_index(table, fallback_first=True)


def _from_frame(frame: pd.DataFrame, layout: str, source: str) -> pd.DataFrame:
    """A DataFrame as a wide frame: its index holds the dates, unless it is the default
    0, 1, 2, ... (then a date column is looked for)."""
    if layout == "long":
        return pivot_long_prices(frame, source=source)
    if layout == "auto":
        _refuse_long(_flat(frame), source, "df")
    if isinstance(frame.index, pd.RangeIndex):
        return _set_date_index(frame, fallback_first=False)
    return frame


def _check_layout(layout: str) -> None:
    if layout not in _LAYOUTS:
        raise DataError(f"layout must be one of {', '.join(map(repr, _LAYOUTS))}, got {layout!r}.")


def read_price_file(path: str | Path, *, layout: Layout = "auto") -> pd.DataFrame:
    """Read a price file into a wide frame (dates as index, one column per asset).

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.csv.gz``, ``.tsv``, ``.txt`` or ``.parquet``. Text files may be
        separated by commas, semicolons (with decimal commas, ``12,5``), tabs or bars; the
        separator is detected.
    layout : {"auto", "wide", "long"}
        ``"wide"``: one column per asset and a date column, found by name or content (the
        first column when it holds dates; a leading column of row numbers written by
        ``DataFrame.to_csv`` is skipped). ``"long"``: one row per date and asset, pivoted
        with :func:`pivot_long_prices`. ``"auto"``: wide, but a clearly long file is
        refused with a message that offers ``layout="long"``.

    Returns
    -------
    DataFrame, shape (n_dates, n_assets)
        Raw contents, not yet validated.
    """
    _check_layout(layout)
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"File not found: {path}. Check the path, or use a bundled data set "
            f"({', '.join(DATASETS)}; see `neuralfolio data list`)."
        )
    if path.is_dir():
        raise DataError(f"{path} is a directory; give the path of a CSV or Parquet file.")
    kind = _kind(path)
    if kind is None:
        raise DataError(
            f"{path}: unsupported file type {path.suffix!r}. Use CSV "
            f"({', '.join(_CSV_SUFFIXES)}) or Parquet ({', '.join(_PARQUET_SUFFIXES)})."
        )
    try:
        table = _flat(pd.read_parquet(path)) if kind == "parquet" else _read_csv(path)
    except DataError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, csv.Error, pd.errors.ParserError) as exc:
        raise DataError(
            f"Could not read {path} as {kind.upper()}: {exc}. Expected a wide table with "
            "dates in the first column and one column of prices per asset."
        ) from exc
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise DataError(
            f"Could not read {path} as {kind.upper()}: {type(exc).__name__}: {exc}. "
            "Check that the file is complete and not corrupt."
        ) from exc
    frame = _to_wide(table, layout, str(path), repr(str(path)))
    if frame.shape[1] == 0:
        raise DataError(
            f"{path}: no asset columns found. Expected dates in the first column and one "
            "column of prices per asset, separated by commas, semicolons or tabs."
        )
    return frame


def _date_where(index: pd.Index) -> str:
    """How messages name the dates' column: by its name when it is named like dates."""
    label = index.name
    if isinstance(label, str) and _norm(label) in _DATE_NAMES:
        return f"The date column {label!r}"
    return "The first column"


def _names(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else None if value is None else list(value)


def _select(
    raw: pd.DataFrame, assets: list[str] | None, drop: list[str] | None, source: str
) -> pd.DataFrame:
    """Keep ``assets`` (in that order) or every column but ``drop``; all names must exist."""
    if assets is None and drop is None:
        return raw
    columns = [str(c) for c in raw.columns]
    for names, what in ((assets, "asset(s)"), (drop, "column(s) to drop")):
        unknown = [a for a in names or () if a not in columns]
        if unknown:
            raise DataError(f"{source}: unknown {what} {unknown}. Available: {', '.join(columns)}.")
    both = [a for a in assets or () if a in (drop or ())]
    if both:
        raise DataError(
            f"{source}: {both} both kept (--assets, assets= in Python) and dropped (--drop, "
            "drop= in Python); name each column in only one of them."
        )
    keep = assets if assets is not None else [c for c in columns if c not in drop]
    return raw.iloc[:, [columns.index(a) for a in keep]]


def load_prices(
    source: PriceSource,
    *,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    assets: list[str] | None = None,
    drop: list[str] | None = None,
    max_fill: int = MAX_FILL_DEFAULT,
    layout: Layout = "auto",
) -> pd.DataFrame:
    """Load and validate a wide price panel.

    Parameters
    ----------
    source : str, Path or DataFrame
        A bundled data set name (``sp500``, ``factors``, ``gfc``), the path of a CSV or
        Parquet file, or a DataFrame with dates as index (or as a column, when the index
        is the default 0, 1, 2, ...) and one column per asset.
    start, end : str or Timestamp, optional
        Inclusive date range to keep.
    assets : list of str, optional
        Columns to keep, in this order; every name must exist. Naming a column here
        declares it a price: the checks for volume-like columns (see
        :func:`validate_prices`) then let it through, for example a high-priced share.
    drop : list of str, optional
        Columns to leave out (volumes, a column of notes); every name must exist and none
        may also be in ``assets``.
    max_fill : int
        Longest gap of missing prices forward-filled (with a warning); see
        :func:`validate_prices`.
    layout : {"auto", "wide", "long"}
        How a file or DataFrame is laid out; see :func:`read_price_file`. ``"long"``
        pivots one row per (date, asset) with :func:`pivot_long_prices`; ``"auto"`` refuses
        a clearly long table with a message that offers it. Bundled data sets are wide.

    Returns
    -------
    DataFrame, shape (n_dates, n_assets)
        Validated float64 prices on a sorted DatetimeIndex.

    Examples
    --------
    >>> prices = load_prices("gfc")
    >>> list(prices.columns)
    ['BAC', 'JPM', 'GE', 'HD']
    >>> list(load_prices("gfc", drop=["GE"]).columns)
    ['BAC', 'JPM', 'HD']
    """
    _check_layout(layout)
    assets, drop = _names(assets), _names(drop)
    if isinstance(source, pd.DataFrame):
        raw, name = _from_frame(source, layout, "DataFrame"), "DataFrame"
    elif isinstance(source, str | Path):
        path = Path(source)
        if isinstance(source, str) and source in DATASETS:
            raw, name = load_dataset(source), f"dataset {source!r}"
        elif path.exists() or _kind(path) is not None or len(path.parts) > 1:
            raw, name = read_price_file(path, layout=layout), str(path)
        else:
            raw, name = load_dataset(str(source)), str(source)  # raises a helpful DataError
    else:
        raise DataError(
            f"Cannot load prices from a {type(source).__name__}; give a data set name, "
            "a file path or a DataFrame."
        )
    narrowed = bool(assets or drop)
    if narrowed:
        # Holidays are dates blank in the whole file; a date blank only for the columns kept
        # is a gap of theirs, handled by the missing-data policy.
        raw = drop_blank_rows(raw, name)
    raw = _select(raw, assets, drop, name)
    if len(raw.columns):
        raw = raw.set_axis(_to_datetime_index(raw.index, name, where=_date_where(raw.index)))
    if start is not None or end is not None:
        # Cut before validating, so gaps outside the range asked for do not matter.
        index = raw.index
        if index.is_monotonic_increasing and not index.has_duplicates:
            cut = raw.loc[start:end]
            if cut.empty:
                raise DataError(
                    f"{name}: no dates between {start} and {end}. The data covers "
                    f"{index[0].date()}..{index[-1].date()}."
                )
            raw = cut
    return validate_prices(raw, source=name, max_fill=max_fill, declared_assets=assets or (),
                           drop_blank=not narrowed)
