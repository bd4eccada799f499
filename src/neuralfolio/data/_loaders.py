"""Loading price panels from a bundled name, a CSV or Parquet file, or a DataFrame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from neuralfolio.data._datasets import DATASETS, load_dataset
from neuralfolio.data._validate import MAX_FILL_DEFAULT, _to_datetime_index, validate_prices
from neuralfolio.errors import DataError

__all__ = ["load_prices", "read_price_file"]

_CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")

PriceSource = str | Path | pd.DataFrame


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    return None


def read_price_file(path: str | Path) -> pd.DataFrame:
    """Read a wide price file (first column: dates; then one column per asset).

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.csv.gz``, ``.tsv``, ``.txt`` or ``.parquet``.

    Returns
    -------
    DataFrame, shape (n_dates, n_assets)
        Raw contents, not yet validated.
    """
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
        if kind == "parquet":
            frame = pd.read_parquet(path)
            if not isinstance(frame.index, pd.DatetimeIndex):
                date_cols = [c for c in frame.columns if str(c).lower() in ("date", "datetime")]
                if date_cols:
                    frame = frame.set_index(date_cols[0])
        else:
            sep = "\t" if path.name.lower().endswith(".tsv") else ","
            frame = pd.read_csv(path, sep=sep, index_col=0)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(
            f"Could not read {path} as {kind.upper()}: {exc}. Expected a wide table with "
            "dates in the first column and one column of prices per asset."
        ) from exc
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise DataError(
            f"Could not read {path} as {kind.upper()}: {type(exc).__name__}: {exc}. "
            "Check that the file is complete and not corrupt."
        ) from exc
    if frame.shape[1] == 0:
        raise DataError(
            f"{path}: no asset columns found. Expected dates in the first column and one "
            "column of prices per asset, separated by commas."
        )
    return frame


def load_prices(
    source: PriceSource,
    *,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    assets: list[str] | None = None,
    max_fill: int = MAX_FILL_DEFAULT,
) -> pd.DataFrame:
    """Load and validate a wide price panel.

    Parameters
    ----------
    source : str, Path or DataFrame
        A bundled data set name (``sp500``, ``factors``, ``gfc``), the path of a CSV or
        Parquet file, or a DataFrame with dates as index and one column per asset.
    start, end : str or Timestamp, optional
        Inclusive date range to keep.
    assets : list of str, optional
        Columns to keep, in this order; every name must exist.
    max_fill : int
        Longest gap of missing prices forward-filled (with a warning); see
        :func:`validate_prices`.

    Returns
    -------
    DataFrame, shape (n_dates, n_assets)
        Validated float64 prices on a sorted DatetimeIndex.

    Examples
    --------
    >>> prices = load_prices("gfc")
    >>> list(prices.columns)
    ['BAC', 'JPM', 'GE', 'HD']
    """
    if isinstance(source, pd.DataFrame):
        raw, name = source, "DataFrame"
    elif isinstance(source, str | Path):
        path = Path(source)
        if isinstance(source, str) and source in DATASETS:
            raw, name = load_dataset(source), f"dataset {source!r}"
        elif path.exists() or _kind(path) is not None or len(path.parts) > 1:
            raw, name = read_price_file(path), str(path)
        else:
            raw, name = load_dataset(str(source)), str(source)  # raises a helpful DataError
    else:
        raise DataError(
            f"Cannot load prices from a {type(source).__name__}; give a data set name, "
            "a file path or a DataFrame."
        )
    if assets is not None:
        columns = [str(c) for c in raw.columns]
        unknown = [a for a in assets if a not in columns]
        if unknown:
            raise DataError(
                f"{name}: unknown asset(s) {unknown}. Available: {', '.join(columns)}."
            )
        raw = raw.loc[:, [raw.columns[columns.index(a)] for a in assets]]
    if start is not None or end is not None:
        # Cut before validating, so gaps outside the range asked for do not matter.
        index = _to_datetime_index(raw.index, name)
        if index.is_monotonic_increasing and not index.has_duplicates:
            cut = raw.set_axis(index).loc[start:end]
            if cut.empty:
                raise DataError(
                    f"{name}: no dates between {start} and {end}. The data covers "
                    f"{index[0].date()}..{index[-1].date()}."
                )
            raw = cut
    return validate_prices(raw, source=name, max_fill=max_fill)
