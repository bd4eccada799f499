"""Validation of price panels and the missing-data policy.

Policy for missing values
-------------------------
* A date on which *no* asset of the panel has a price (a holiday row in a CSV file) is not a
  trading day: the row is dropped, with a :class:`DataWarning` that counts the rows and names
  the first dates. (With a single asset, every date without its price is such a row.)
* Gaps *inside* an asset's history of at most ``max_fill`` consecutive trading days are
  forward-filled (the last traded price is carried), with a :class:`DataWarning` that names
  the asset and the dates filled.
* Longer inside gaps, and missing values at the start or the end of an asset's history
  (asset not yet listed, or delisted), are refused with a :class:`DataError` that names the
  asset and the dates and says how to fix the panel. No asset or date with a price is ever
  dropped silently.

Columns that are not prices
---------------------------
A column whose name says it holds trading volume, open interest, shares outstanding,
turnover or a count of trades, or whose values are whole numbers far larger than prices
(see :func:`validate_prices`), is refused. Columns the caller declares to be assets
(``declared_assets``, which :func:`~neuralfolio.data.load_prices` fills from ``assets=``)
are exempt: naming a column explicitly says it is a price.

Messages that suggest a fix name it both as a command-line flag and as a Python keyword,
for example ``--drop Volume (drop=['Volume'] in Python)``.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Collection, Hashable

import numpy as np
import pandas as pd

from neuralfolio.errors import DataError, DataWarning, InsufficientHistoryError

__all__ = ["MAX_FILL_DEFAULT", "require_history", "simple_returns", "validate_prices"]

MAX_FILL_DEFAULT = 5
"""Default longest run of missing prices (trading days) that is forward-filled."""

_MAX_LISTED = 5

_COUNT_MEDIAN = 1e5
"""Whole-number columns with a median above this look like counts (volume, shares)."""

_COUNT_RATIO = 1000.0
"""Whole-number columns whose median is this many times the others' look like counts..."""

_COUNT_RATIO_FLOOR = 1e4
"""...provided the median is above this too (smaller counts cannot be told from prices)."""

_NON_PRICE_NAMES = (
    ("trading volume", re.compile(r"volume(?! weighted)")),
    ("open interest", re.compile(r"open ?interest")),
    ("shares outstanding", re.compile(r"\bshares|\bshrout\b")),
    ("turnover", re.compile(r"turnover")),
    ("a number of trades", re.compile(r"trades\b|trade ?count")),
)
# Short words that are only read as a label beside another word ("AAPL_vol", "vol AAPL"),
# never alone or after "." / "-", so that tickers such as VOL, OI or OI-A stay assets.
_NON_PRICE_WORDS = {"vol": "trading volume", "oi": "open interest", "count": "a count"}


def _fmt_dates(dates: pd.Index | list) -> str:
    dates = [pd.Timestamp(d).date().isoformat() for d in dates]
    if len(dates) > _MAX_LISTED:
        return ", ".join(dates[:_MAX_LISTED]) + f", ... ({len(dates)} in all)"
    return ", ".join(dates)


def _fix(param: str, value: str | int | list[str]) -> str:
    """Name a fix as a CLI flag and as a Python keyword.

    ``_fix("drop", ["A", "B"])`` gives ``--drop A,B (drop=['A', 'B'] in Python)``.
    """
    cli = ",".join(value) if isinstance(value, list) else str(value)
    if any(ch.isspace() for ch in cli):
        cli = f'"{cli}"'
    return f"--{param.replace('_', '-')} {cli} ({param}={value!r} in Python)"


def _is_number(label: object) -> bool:
    return (
        isinstance(label, int | float | np.integer | np.floating)
        and not isinstance(label, bool | np.bool_)
        and not pd.isna(label)
    )


def _timestamp(value) -> pd.Timestamp:
    """``value`` read on its own as a timestamp, offset kept (NaT if it is not a date)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return pd.NaT
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dateutil's "Could not infer format"
            return pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT


def _missing(value) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _offset(t: pd.Timestamp) -> str:
    """How a parsed timestamp's UTC offset is written: ``+01:00``, or ``no offset``."""
    if t.tzinfo is None:
        return "no offset"
    minutes = int(t.utcoffset().total_seconds() // 60)
    sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_dates(labels: pd.Series) -> pd.Series | None:
    """Labels parsed as dates (NaT where one is not), or None when they carry different UTC
    offsets (or some carry one and others none), which pandas cannot put in one column."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Could not infer format")
            parsed = pd.to_datetime(labels, errors="coerce")
            stray = parsed.isna() & labels.notna()
            if stray.any() and labels[labels.notna()].map(
                lambda v: isinstance(v, str) and re.match(r"\s*\d{4}-\d{2}-\d{2}", v) is not None
            ).all():
                # pandas reads every label in the format of the first: with ISO dates only,
                # 2020-01-02 and 2020-01-03 16:00 are both dates, whatever the first one.
                parsed = pd.to_datetime(labels, errors="coerce", format="ISO8601")
    except ValueError:  # "Mixed timezones detected"
        return None
    stamps = labels[parsed.isna() & labels.notna()].map(_timestamp).dropna()
    if len(stamps) and len({t.tzinfo is None for t in stamps} | {parsed.dt.tz is None}) > 1:
        return None  # dates with an offset among dates without one: pandas drops one kind
    return parsed


def _local_dates(labels: pd.Series, source: str) -> pd.Series:
    """Labels with different UTC offsets as their own local date and time, offsets dropped.

    A daily close stamped ``2020-01-03 00:00-05:00`` is the close of 2020-01-03: exports
    that follow daylight saving time (-05:00 in winter, -04:00 in summer) are read that way,
    with a :class:`DataWarning`. When the offsets matter, because local times would put two
    moments in another order or on one row, a :class:`DataError` shows the two and asks
    for one offset.
    """
    stamps = [_timestamp(v) for v in labels]
    local = pd.Series(
        [t if t is pd.NaT or t.tzinfo is None else t.tz_localize(None) for t in stamps],
        index=labels.index, dtype="datetime64[us]",
    )
    known = [(i, t) for i, t in enumerate(stamps) if t is not pd.NaT]
    aware = sorted((t.tz_convert("UTC"), local.iloc[i], i) for i, t in known if t.tzinfo)
    utc = aware[0][0] if aware else pd.Timestamp("2020-01-02 14:30")
    fix = (
        "write every date with the same UTC offset, or as plain local dates without one, or "
        f"all in UTC (for example {utc.strftime('%Y-%m-%dT%H:%M:%SZ')})."
    )
    for (u0, l0, i0), (u1, l1, i1) in itertools.pairwise(aware):
        if (u0 < u1) != (l0 < l1) or (u0 == u1) != (l0 == l1):
            how = (
                "would read as the same time" if l0 == l1
                else "are one moment but would read as two" if u0 == u1
                else "would read in the wrong order"
            )
            raise DataError(
                f"{source}: the dates mix UTC offsets ({labels.iloc[i0]!r} and "
                f"{labels.iloc[i1]!r}), and these two {how} with the offsets dropped. To fix "
                f"it, {fix}"
            )
    first = known[0][1] if known else None
    other = next((t for _, t in known if _offset(t) != _offset(first)), None)
    shown = (
        f" ({_offset(first)} on {first.date()}, {_offset(other)} on {other.date()}"
        + (", as with daylight saving time)" if first.tzinfo and other.tzinfo else ")")
        if other is not None else ""
    )
    warnings.warn(
        f"{source}: the dates carry different UTC offsets{shown}; kept each one's local "
        f"date and time and dropped the offsets. If that is not what they mean, {fix}",
        DataWarning,
        stacklevel=4,
    )
    return local


def _to_datetime_index(
    index: pd.Index, source: str, *, where: str = "The first column"
) -> pd.DatetimeIndex:
    """Parse row labels as dates; numbers are refused, never read as 1970 epoch offsets.

    Labels with different UTC offsets keep their own local date and time (the offsets are
    dropped), with a :class:`DataWarning`, unless that would reorder or merge rows (a
    :class:`DataError`); see :func:`_local_dates`.
    """
    if isinstance(index, pd.DatetimeIndex):
        return index.copy()
    labels = pd.Series(index, dtype=object)
    numeric = labels.map(_is_number).to_numpy(dtype=bool)
    fix = f"{where} must hold dates (for example 2020-01-31), one row per trading day."
    if len(labels) and numeric.all():
        shown = ", ".join(str(v) for v in labels.iloc[:3])
        raise DataError(
            f"{source}: the row labels are plain numbers ({shown}, ...), not dates. {fix} "
            "For a DataFrame, set the dates as its index (df.set_index('date'))."
        )
    labels = labels.mask(numeric, None)  # numbers are not dates; never parse them
    blank = labels.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
    labels = labels.mask(blank, None)
    parsed = _parse_dates(labels)
    if parsed is None:
        parsed = _local_dates(labels, source)
    bad = parsed.isna().to_numpy() | numeric
    if bad.any():
        pos = int(np.argmax(bad))
        first = index[pos]
        if not numeric[pos] and _missing(labels.iloc[pos]):
            after = parsed.iloc[:pos].dropna()
            where_blank = (f"the row after {after.iloc[-1].date()}" if len(after)
                           else "the first row")
            what = f"the first is blank ({where_blank})"
        else:
            what = f"the first is {first!r}"
            good = parsed.dropna()
            if not numeric[pos] and _timestamp(labels.iloc[pos]) is not pd.NaT and len(good):
                # A date, in another format than the first: pandas reads all in that one.
                what += (f" (a date written unlike the first, {labels[good.index[0]]!r}: "
                         "write every date the same way)")
        raise DataError(
            f"{source}: {int(bad.sum())} row label(s) are not dates, {what}. " + fix
        )
    return pd.DatetimeIndex(parsed.to_numpy(), name=index.name)


def _numeric_column(col: pd.Series, asset: Hashable, source: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(col.dtype):
        raise DataError(
            f"{source}: column {asset!r} holds true/false values, not prices. "
            f"Remove the column (leave it out with {_fix('drop', [str(asset)])}) "
            "or replace it with prices."
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
            "Every asset column must hold prices; fix or remove those cells, or leave the "
            f"column out with {_fix('drop', [str(asset)])}."
        )
    return converted.astype("float64")


def _non_price_name(name: str) -> str | None:
    """What a column name says it holds, if that is clearly not a price."""
    norm = " ".join(re.findall(r"[a-z0-9]+", name.lower()))
    for label, pattern in _NON_PRICE_NAMES:
        if pattern.search(norm):
            return label
    parts = [p.lower() for p in re.split(r"[_\s]+", name.strip())]
    if len(parts) > 1:
        for part in parts:
            if part in _NON_PRICE_WORDS:
                return _NON_PRICE_WORDS[part]
    return None


def _refuse_non_price_columns(clean: pd.DataFrame, source: str, declared: Collection[str]) -> None:
    """Raise if columns look like volumes or counts rather than prices (see validate_prices)."""
    reasons: dict[str, str] = {}
    for asset in clean.columns:
        label = _non_price_name(asset)
        if label is not None and asset not in declared:
            reasons[asset] = f"its name says {label}"
    finite = {a: v[np.isfinite(v)] for a, v in clean.items()}
    medians = {a: float(np.median(v)) for a, v in finite.items() if v.size}
    for asset, values in finite.items():
        if asset in declared or asset in reasons or not values.size:
            continue
        if not np.array_equal(values, np.round(values)):
            continue
        median = medians[asset]
        others = [m for a, m in medians.items() if a != asset and a not in reasons]
        reference = float(np.median(others)) if others else 0.0
        if median > _COUNT_MEDIAN:
            reasons[asset] = f"whole numbers with median {median:,.0f}"
        elif median > _COUNT_RATIO_FLOOR and reference > 0 and median > _COUNT_RATIO * reference:
            reasons[asset] = (
                f"whole numbers with median {median:,.0f}, over {_COUNT_RATIO:,.0f} times "
                f"the median {reference:,.4g} of the other columns"
            )
    if not reasons:
        return
    flagged = list(reasons)
    rest = [a for a in clean.columns if a not in reasons]
    one = len(flagged) == 1
    keep = f", or keep only the price columns with {_fix('assets', rest)}" if rest else ""
    raise DataError(
        f"{source}: {'column' if one else 'columns'} "
        + "; ".join(f"{a!r} ({why})" for a, why in reasons.items())
        + f" {'looks' if one else 'look'} like volumes or counts, not prices. "
        f"Leave {'it' if one else 'them'} out with {_fix('drop', flagged)}{keep}. If "
        f"{'it is' if one else 'one of them is'} a price (a high-priced share such as BRK-A, "
        "or prices in whole units of a currency such as KRW), name it in --assets "
        "(assets= in Python) to keep it."
    )


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Start and stop (exclusive) of each run of True in a boolean vector."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _edge_gap_message(
    source: str, asset: str, gap: pd.DatetimeIndex, price_date: pd.Timestamp, leading: bool
) -> str:
    day = price_date.date().isoformat()
    if leading:
        what = f"no prices before {day} (listed late; {len(gap)} date(s) missing from "
        what += f"{gap[0].date()}): start the panel there with {_fix('start', day)}"
    else:
        what = f"no prices after {day} (delisted, or its data ends early; {len(gap)} date(s) "
        what += f"missing to {gap[-1].date()}): end the panel there with {_fix('end', day)}"
    return (
        f"{source}: asset {asset!r} has {what}, "
        f"or leave the asset out with {_fix('drop', [asset])}."
    )


def _warn_blank(source: str, dates: pd.Index) -> None:
    warnings.warn(
        f"{source}: dropped {len(dates)} date(s) on which no asset has a price, as "
        f"non-trading days: {_fmt_dates(dates)}.",
        DataWarning,
        stacklevel=3,
    )


def drop_blank_rows(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """``frame`` without its rows that hold no value at all, with a :class:`DataWarning`
    naming them (non-trading days, such as a holiday row in a CSV)."""
    blank = frame.isna().all(axis=1).to_numpy() if frame.shape[1] else np.zeros(0, bool)
    if not blank.any():
        return frame
    _warn_blank(source, frame.index[blank])
    return frame.loc[~blank]


def validate_prices(
    prices: pd.DataFrame,
    *,
    source: str = "price panel",
    max_fill: int = MAX_FILL_DEFAULT,
    declared_assets: Collection[str] = (),
    drop_blank: bool = True,
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
    declared_assets : collection of str
        Columns the caller states are asset prices (for example named in ``assets=``); the
        checks for volume-like columns below skip them.
    drop_blank : bool
        Drop dates on which no asset has a price (non-trading days), with a warning. Off
        when the caller already dropped the dates blank in the whole file and kept a subset
        of its columns: a date missing for the subset only is a gap, not a holiday.

    Returns
    -------
    DataFrame, shape (n_dates_kept, n_assets)
        Float64 prices on a sorted, unique DatetimeIndex named ``date``; short gaps filled,
        dates without any price dropped.

    Raises
    ------
    DataError
        Names the asset, date or file at fault and says what to do.

    Notes
    -----
    A column that is not declared is refused as "not prices" when its name says volume,
    open interest, shares outstanding, turnover or number of trades (``Volume``,
    ``AAPL Volume``, ``open_interest``, ``vol_AAPL``), or when all its values are whole
    numbers and their median is above 100,000, or above 10,000 and more than 1,000 times the
    median of the other columns. Short tickers such as ``VOL`` or ``OI`` are never refused
    by name alone.
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
    _refuse_non_price_columns(clean, source, {str(a) for a in declared_assets})
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
    empty = [a for j, a in enumerate(clean.columns) if missing[:, j].all()]
    if empty:
        raise DataError(
            f"{source}: asset {empty[0]!r} has no prices at all. Remove the column: leave "
            f"it out with {_fix('drop', empty)}."
        )
    blank = missing.all(axis=1) if drop_blank else np.zeros(len(index), dtype=bool)
    if blank.any():
        _warn_blank(source, index[blank])
        clean, index, missing = clean[~blank], index[~blank], missing[~blank]
        if len(index) < 2:
            raise InsufficientHistoryError(
                f"{source}: {len(index)} date(s) with prices; a price panel needs at least two."
            )
    if missing.any():
        filled: list[str] = []
        for j, asset in enumerate(clean.columns):
            col_missing = missing[:, j]
            if not col_missing.any():
                continue
            for start, stop in _runs(col_missing):
                gap = index[start:stop]
                if start == 0 or stop == len(index):
                    leading = start == 0
                    price_date = index[stop] if leading else index[start - 1]
                    raise DataError(_edge_gap_message(source, asset, gap, price_date, leading))
                if stop - start > max_fill:
                    raise DataError(
                        f"{source}: asset {asset!r} has {stop - start} missing prices in a row, "
                        f"{gap[0].date()}..{gap[-1].date()}, more than max_fill={max_fill}. "
                        "Fill the gap from another source, choose a date range without it, "
                        f"or raise the limit with {_fix('max_fill', stop - start)} "
                        "if carrying the last price is acceptable."
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
