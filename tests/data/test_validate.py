"""Tests for neuralfolio.data._validate: validate_prices, require_history, simple_returns."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuralfolio.data import (
    MAX_FILL_DEFAULT,
    require_history,
    simple_returns,
    validate_prices,
)
from neuralfolio.errors import DataError, DataWarning, InsufficientHistoryError


def _dates(n: int) -> pd.DatetimeIndex:
    """Business days from 2020-01-01, with no freq (as a file would give)."""
    return pd.DatetimeIndex(list(pd.bdate_range("2020-01-01", periods=n)))


def _day(index: pd.DatetimeIndex, i: int) -> str:
    return index[i].date().isoformat()


def _panel(n: int = 10, columns: tuple[str, ...] = ("A", "B", "C")) -> pd.DataFrame:
    values = 100.0 + np.arange(n * len(columns), dtype=float).reshape(n, len(columns))
    return pd.DataFrame(values, index=_dates(n), columns=list(columns))


# --- happy path -------------------------------------------------------------------------------


def test_clean_panel_is_returned_as_float_with_date_index() -> None:
    raw = _panel().astype(int)
    out = validate_prices(raw)
    assert list(out.columns) == ["A", "B", "C"]
    assert out.index.name == "date"
    assert isinstance(out.index, pd.DatetimeIndex)
    assert (out.dtypes == "float64").all()
    np.testing.assert_array_equal(out.to_numpy(), raw.to_numpy().astype(float))


def test_string_date_labels_are_parsed() -> None:
    raw = _panel(3)
    raw.index = ["2020-01-01", "2020-01-02", "2020-01-03"]
    out = validate_prices(raw)
    assert list(out.index) == list(pd.to_datetime(raw.index))


def test_not_a_dataframe_raises() -> None:
    with pytest.raises(DataError, match=r"expected a pandas DataFrame .*got ndarray"):
        validate_prices(np.ones((3, 2)))  # type: ignore[arg-type]


def test_no_columns_raises() -> None:
    with pytest.raises(DataError, match="no asset columns"):
        validate_prices(pd.DataFrame(index=_dates(3)))


def test_duplicate_columns_raise() -> None:
    raw = _panel(3, ("A", "A", "B"))
    with pytest.raises(DataError, match=r"\['A'\] appear more than once.*single column"):
        validate_prices(raw)


def test_negative_max_fill_raises() -> None:
    with pytest.raises(DataError, match=r"max_fill must be >= 0, got -1"):
        validate_prices(_panel(), max_fill=-1)


def test_source_is_named_in_messages() -> None:
    raw = _panel(3)
    raw.iloc[1, 0] = -1.0
    with pytest.raises(DataError, match=r"^my_prices\.csv: "):
        validate_prices(raw, source="my_prices.csv")


def test_input_frame_is_not_modified() -> None:
    raw = _panel(4)
    raw.index.name = "Date"
    before = raw.copy(deep=True)
    validate_prices(raw)
    assert raw.index.name == "Date"
    pd.testing.assert_frame_equal(raw, before)


# --- non-numeric ------------------------------------------------------------------------------


def test_non_numeric_cell_names_asset_date_and_value() -> None:
    raw = _panel(4).astype(object)
    raw.iloc[2, 1] = "abc"
    day = _day(raw.index, 2)
    with pytest.raises(
        DataError,
        match=rf"column 'B' is not numeric: value 'abc' on {day}.*fix or remove those cells",
    ):
        validate_prices(raw)


def test_numeric_strings_are_converted() -> None:
    raw = _panel(3).astype(str)
    out = validate_prices(raw)
    np.testing.assert_array_equal(out.to_numpy(), _panel(3).to_numpy())


def test_bool_column_raises() -> None:
    raw = _panel(3)
    raw["FLAG"] = [True, False, True]
    with pytest.raises(
        DataError, match=r"column 'FLAG' holds true/false values.*Remove the column"
    ):
        validate_prices(raw)


# --- bad prices -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -3.5])
def test_non_positive_price_names_asset_and_date(bad: float) -> None:
    raw = _panel(5)
    raw.iloc[3, 2] = bad
    day = _day(raw.index, 3)
    with pytest.raises(
        DataError,
        match=rf"asset 'C' has a non-positive price .* on {day}.*Prices must be > 0",
    ):
        validate_prices(raw)


def test_non_positive_price_message_shows_plain_number() -> None:
    raw = _panel(5)
    raw.iloc[3, 2] = -3.5
    with pytest.raises(DataError, match=r"non-positive price -3\.5 on "):
        validate_prices(raw)


def test_infinite_price_names_asset_and_date() -> None:
    raw = _panel(5)
    raw.iloc[1, 0] = np.inf
    with pytest.raises(
        DataError, match=rf"asset 'A' has an infinite price on {_day(raw.index, 1)}"
    ):
        validate_prices(raw)


# --- dates ------------------------------------------------------------------------------------


def test_duplicate_dates_are_named_and_fix_suggested() -> None:
    raw = _panel(4)
    raw.index = raw.index[[0, 1, 1, 2]]
    with pytest.raises(
        DataError, match=rf"duplicate date\(s\) {_day(raw.index, 1)}\. Keep one row per date"
    ):
        validate_prices(raw)


def test_unsorted_dates_are_named_and_sort_suggested() -> None:
    raw = _panel(4)
    idx = raw.index
    raw.index = idx[[0, 2, 1, 3]]
    with pytest.raises(
        DataError,
        match=(
            rf"not in increasing order: {_day(idx, 1)} comes after {_day(idx, 2)}\. "
            r"Sort the rows by date \(df\.sort_index\(\)\)"
        ),
    ):
        validate_prices(raw)


@pytest.mark.filterwarnings("ignore:Could not infer format:UserWarning")
def test_non_date_label_is_named() -> None:
    raw = _panel(3)
    raw.index = ["2020-01-01", "not-a-date", "2020-01-03"]
    with pytest.raises(
        DataError,
        match=r"1 row label\(s\) are not dates, the first is 'not-a-date'.*must hold dates",
    ):
        validate_prices(raw)


@pytest.mark.filterwarnings("ignore:Could not infer format:UserWarning")
def test_all_labels_non_dates_counts_them() -> None:
    raw = _panel(3)
    raw.index = pd.Index(["x", "y", "z"])
    with pytest.raises(DataError, match=r"3 row label\(s\) are not dates, the first is 'x'"):
        validate_prices(raw)


# --- missing values ---------------------------------------------------------------------------


def test_default_max_fill_is_five() -> None:
    assert MAX_FILL_DEFAULT == 5


def test_short_gap_is_forward_filled_with_warning() -> None:
    raw = _panel(8)
    raw.iloc[2:4, 1] = np.nan
    gap = f"{_day(raw.index, 2)}, {_day(raw.index, 3)}"
    with pytest.warns(DataWarning, match=rf"forward-filled 1 short gap\(s\).*B on {gap}"):
        out = validate_prices(raw)
    assert not out.isna().to_numpy().any()
    assert out.iloc[2, 1] == raw.iloc[1, 1]
    assert out.iloc[3, 1] == raw.iloc[1, 1]
    assert list(out.columns) == list(raw.columns)


def test_gap_of_exactly_max_fill_is_filled() -> None:
    raw = _panel(10)
    raw.iloc[1 : 1 + MAX_FILL_DEFAULT, 0] = np.nan
    with pytest.warns(DataWarning, match="A on"):
        out = validate_prices(raw)
    assert (out.iloc[1 : 1 + MAX_FILL_DEFAULT, 0] == raw.iloc[0, 0]).all()


def test_long_gap_raises_naming_asset_dates_and_max_fill() -> None:
    raw = _panel(10)
    raw.iloc[2:6, 2] = np.nan
    first, last = _day(raw.index, 2), _day(raw.index, 5)
    with pytest.raises(
        DataError,
        match=(
            rf"asset 'C' has 4 missing prices in a row, {first}\.\.{last}, "
            r"more than max_fill=3\..*raise the limit with --max-fill 4 \(max_fill=4 in Python\)"
        ),
    ):
        validate_prices(raw, max_fill=3)


def test_max_fill_zero_refuses_any_gap() -> None:
    raw = _panel(5)
    raw.iloc[2, 0] = np.nan
    with pytest.raises(DataError, match=r"asset 'A' has 1 missing prices in a row.*max_fill=0"):
        validate_prices(raw, max_fill=0)


def test_leading_nans_raise_and_suggest_start_or_drop() -> None:
    raw = _panel(6)
    raw.iloc[0:2, 1] = np.nan
    first, listed = _day(raw.index, 0), _day(raw.index, 2)
    with pytest.raises(
        DataError,
        match=(
            rf"asset 'B' has no prices before {listed} \(listed late; 2 date\(s\) missing "
            rf"from {first}\): start the panel there with --start {listed} "
            rf"\(start='{listed}' in Python\), or leave the asset out with --drop B "
            r"\(drop=\['B'\] in Python\)\.$"
        ),
    ):
        validate_prices(raw)


def test_trailing_nans_raise() -> None:
    raw = _panel(6)
    raw.iloc[-1, 0] = np.nan
    day, last = _day(raw.index, 5), _day(raw.index, 4)
    with pytest.raises(
        DataError,
        match=(
            rf"asset 'A' has no prices after {last} \(delisted, or its data ends early; "
            rf"1 date\(s\) missing to {day}\): end the panel there with --end {last} "
            rf"\(end='{last}' in Python\), or leave the asset out with --drop A"
        ),
    ):
        validate_prices(raw)


def test_all_nan_column_raises() -> None:
    raw = _panel(4)
    raw["EMPTY"] = np.nan
    with pytest.raises(DataError, match=r"asset 'EMPTY' has no prices at all\. Remove the column"):
        validate_prices(raw)


def test_columns_are_never_dropped_or_reordered() -> None:
    raw = _panel(6, ("Z", "A", "M", "B"))
    raw.iloc[2, 0] = np.nan
    raw.iloc[3, 3] = np.nan
    with pytest.warns(DataWarning, match=r"2 short gap\(s\).*Z on .*B on "):
        out = validate_prices(raw)
    assert list(out.columns) == ["Z", "A", "M", "B"]
    assert out.shape == raw.shape


# --- require_history / simple_returns ---------------------------------------------------------


def test_require_history_raises_with_counts() -> None:
    prices = validate_prices(_panel(3))
    span = f"{_day(prices.index, 0)}..{_day(prices.index, 2)}"
    with pytest.raises(
        InsufficientHistoryError,
        match=(
            rf"Too little history: 3 dates \({span}\), but window=5 needs at least 10\. "
            r"Load a longer price history"
        ),
    ):
        require_history(prices, 10, what="window=5")


def test_require_history_passes_when_enough() -> None:
    require_history(validate_prices(_panel(10)), 10, what="anything")


def test_require_history_on_empty_frame() -> None:
    with pytest.raises(InsufficientHistoryError, match=r"0 dates, but x needs at least 1"):
        require_history(pd.DataFrame(), 1, what="x")


def test_insufficient_history_is_a_data_error() -> None:
    assert issubclass(InsufficientHistoryError, DataError)


@pytest.mark.parametrize("n", [0, 1])
def test_panel_with_fewer_than_two_rows_raises(n: int) -> None:
    with pytest.raises(
        InsufficientHistoryError, match=rf"{n} row\(s\); a price panel needs at least two dates"
    ):
        validate_prices(_panel(n))


def test_simple_returns_values_and_shape() -> None:
    prices = validate_prices(_panel(5))
    rets = simple_returns(prices)
    assert rets.shape == (4, 3)
    assert list(rets.index) == list(prices.index[1:])
    expected = prices.to_numpy()[1:] / prices.to_numpy()[:-1] - 1.0
    np.testing.assert_allclose(rets.to_numpy(), expected, rtol=0, atol=1e-15)


# --- property: the fill policy keeps data and never drops anything ----------------------------


@st.composite
def _panels_with_short_gaps(draw: st.DrawFn) -> tuple[pd.DataFrame, np.ndarray]:
    n_rows = draw(st.integers(2, 12))
    n_cols = draw(st.integers(1, 4))
    values = np.array(
        draw(
            st.lists(
                st.floats(0.01, 1e4, allow_nan=False, allow_infinity=False),
                min_size=n_rows * n_cols,
                max_size=n_rows * n_cols,
            )
        )
    ).reshape(n_rows, n_cols)
    mask = np.zeros((n_rows, n_cols), dtype=bool)
    for j in range(n_cols):
        inner = draw(st.lists(st.booleans(), min_size=n_rows - 2, max_size=n_rows - 2))
        run = 0
        for i, missing in enumerate(inner, start=1):
            run = run + 1 if missing else 0
            if run > 3:  # break runs longer than 3 with a present value
                run = 0
                missing = False
            mask[i, j] = missing
    frame = pd.DataFrame(values, index=_dates(n_rows), columns=[f"S{j}" for j in range(n_cols)])
    return frame.mask(mask), mask


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_panels_with_short_gaps())
def test_short_gaps_are_filled_and_present_values_kept(
    case: tuple[pd.DataFrame, np.ndarray],
) -> None:
    raw, mask = case
    # Dates on which every asset is missing are dropped as non-trading days (one warning);
    # the other gaps are forward-filled (another warning).
    blank = mask.all(axis=1)
    kept = mask[~blank]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = validate_prices(raw, max_fill=3)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(messages) == int(blank.any()) + int(kept.any())
    if blank.any():
        assert f"dropped {int(blank.sum())} date(s) on which no asset has a price" in messages[0]
    if kept.any():
        # One entry per gap; the message lists at most five and then gives the total.
        n_gaps = int((np.diff(kept.astype(np.int8), axis=0) == 1).sum())
        message = messages[-1]
        assert f"forward-filled {n_gaps} short gap(s)" in message
        if n_gaps <= 5:
            for j in np.flatnonzero(kept.any(axis=0)):
                assert re.search(rf"\b{raw.columns[j]} on ", message)
        else:
            assert f"({n_gaps} in all)" in message
    assert out.shape == (len(raw) - int(blank.sum()), raw.shape[1])
    assert list(out.columns) == list(raw.columns)
    assert not out.isna().to_numpy().any()
    np.testing.assert_array_equal(out.to_numpy()[~kept], raw.to_numpy()[~blank][~kept])
    np.testing.assert_array_equal(out.to_numpy(), raw[~blank].ffill().to_numpy())
