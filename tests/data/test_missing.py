"""Missing data: dates without any price, and the messages for late listings and delistings."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuralfolio.data import load_prices, simple_returns, validate_prices
from neuralfolio.errors import DataError, DataWarning, InsufficientHistoryError


def _dates(n: int) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(list(pd.bdate_range("2020-01-01", periods=n)))


def _panel(n: int = 8, columns: tuple[str, ...] = ("A", "B", "C")) -> pd.DataFrame:
    values = 100.0 + np.arange(n * len(columns), dtype=float).reshape(n, len(columns))
    return pd.DataFrame(values, index=_dates(n), columns=list(columns))


def _day(index: pd.DatetimeIndex, i: int) -> str:
    return index[i].date().isoformat()


def _data_warnings(func) -> tuple[pd.DataFrame, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = func()
    return out, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


# --- dates on which no asset has a price ------------------------------------------------------


def test_all_blank_row_is_dropped_as_non_trading_day() -> None:
    raw = _panel()
    raw.iloc[3] = np.nan
    out, messages = _data_warnings(lambda: validate_prices(raw))
    assert messages == [
        f"price panel: dropped 1 date(s) on which no asset has a price, as non-trading days: "
        f"{_day(raw.index, 3)}."
    ]
    pd.testing.assert_frame_equal(
        out, validate_prices(raw.drop(index=raw.index[3])), check_freq=False
    )


def test_all_blank_row_gives_no_fake_zero_return() -> None:
    raw = _panel(5)
    raw.iloc[2] = np.nan
    with pytest.warns(DataWarning, match="non-trading days"):
        rets = simple_returns(validate_prices(raw))
    assert (rets.to_numpy() != 0).all()
    assert rets.index[1] == raw.index[3]
    np.testing.assert_allclose(rets.iloc[1].to_numpy(), raw.iloc[3] / raw.iloc[1] - 1)


def test_holiday_row_in_csv_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "date,A,B\n2020-12-24,10,20\n2020-12-25,,\n2020-12-28,11,21\n2020-12-29,12,22\n"
    )
    out, messages = _data_warnings(lambda: load_prices(path))
    assert len(messages) == 1
    assert "dropped 1 date(s) on which no asset has a price" in messages[0]
    assert "2020-12-25" in messages[0]
    assert "forward-filled" not in messages[0]
    assert list(out.index) == list(pd.DatetimeIndex(["2020-12-24", "2020-12-28", "2020-12-29"]))


def test_many_blank_rows_are_counted_and_the_first_named() -> None:
    raw = _panel(12)
    raw.iloc[1:8] = np.nan
    out, messages = _data_warnings(lambda: validate_prices(raw))
    assert len(out) == 5
    assert "dropped 7 date(s)" in messages[0]
    assert f"{_day(raw.index, 1)}, " in messages[0]
    assert "(7 in all)" in messages[0]


def test_leading_and_trailing_blank_rows_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("date,A,B\n2020-01-01,,\n2020-01-02,1,2\n2020-01-03,2,3\n2020-01-06\n")
    out, messages = _data_warnings(lambda: load_prices(path))
    assert list(out.index) == list(pd.DatetimeIndex(["2020-01-02", "2020-01-03"]))
    assert "dropped 2 date(s)" in messages[0]
    assert "2020-01-01, 2020-01-06" in messages[0]


def test_partly_blank_row_is_still_forward_filled() -> None:
    raw = _panel()
    raw.iloc[3, :2] = np.nan  # C still trades that day
    out, messages = _data_warnings(lambda: validate_prices(raw))
    assert len(messages) == 1
    assert "forward-filled 2 short gap(s)" in messages[0]
    assert out.shape == raw.shape


def test_blank_and_partly_blank_rows_together() -> None:
    raw = _panel()
    raw.iloc[2] = np.nan
    raw.iloc[5, 0] = np.nan
    out, messages = _data_warnings(lambda: validate_prices(raw))
    assert len(messages) == 2
    assert f"non-trading days: {_day(raw.index, 2)}" in messages[0]
    assert (
        f"forward-filled 1 short gap(s) (at most 5 days): A on {_day(raw.index, 5)}"
        in (messages[1])
    )
    assert len(out) == len(raw) - 1
    assert out.loc[raw.index[5], "A"] == raw.iloc[4, 0]


def test_blank_rows_leaving_one_date_raise() -> None:
    raw = _panel(3, ("A", "B"))
    raw.iloc[1:] = np.nan
    with (
        pytest.warns(DataWarning, match="dropped 2 date"),
        pytest.raises(InsufficientHistoryError, match=r"1 date\(s\) with prices"),
    ):
        validate_prices(raw)


def test_blank_rows_beyond_max_fill_are_dropped_not_refused() -> None:
    raw = _panel(12)
    raw.iloc[2:9] = np.nan  # a market closure longer than max_fill
    out, _ = _data_warnings(lambda: validate_prices(raw, max_fill=2))
    assert len(out) == 5


@st.composite
def _panels_with_blank_rows(draw: st.DrawFn) -> tuple[pd.DataFrame, np.ndarray]:
    n_rows = draw(st.integers(3, 15))
    n_cols = draw(st.integers(1, 4))
    values = draw(
        st.lists(st.floats(0.01, 1e4), min_size=n_rows * n_cols, max_size=n_rows * n_cols)
    )
    frame = pd.DataFrame(
        np.array(values).reshape(n_rows, n_cols),
        index=_dates(n_rows),
        columns=[f"S{j}" for j in range(n_cols)],
    )
    blank = np.array(draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows)))
    keep = draw(st.sets(st.integers(0, n_rows - 1), min_size=2, max_size=2))
    blank[list(keep)] = False
    frame[blank] = np.nan
    return frame, blank


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_panels_with_blank_rows())
def test_blank_rows_are_dropped_and_every_price_kept(case: tuple[pd.DataFrame, np.ndarray]) -> None:
    raw, blank = case
    out, messages = _data_warnings(lambda: validate_prices(raw, max_fill=0))
    assert len(messages) == int(blank.any())
    if blank.any():
        assert f"dropped {int(blank.sum())} date(s)" in messages[0]
    assert list(out.index) == list(raw.index[~blank])
    np.testing.assert_array_equal(out.to_numpy(), raw.to_numpy()[~blank])


# --- late listings, delistings, long gaps: messages name both the CLI and the Python fix ----


def test_late_listing_message_names_the_first_price_date() -> None:
    raw = _panel(8)
    raw.iloc[:3, 2] = np.nan
    listed = _day(raw.index, 3)
    with pytest.raises(DataError) as info:
        validate_prices(raw, source="p.csv")
    assert str(info.value) == (
        f"p.csv: asset 'C' has no prices before {listed} (listed late; 3 date(s) missing from "
        f"{_day(raw.index, 0)}): start the panel there with --start {listed} "
        f"(start='{listed}' in Python), or leave the asset out with --drop C "
        "(drop=['C'] in Python)."
    )
    assert "before its first price" not in str(info.value)


def test_late_listing_fix_works() -> None:
    raw = _panel(8)
    raw.iloc[:3, 2] = np.nan
    assert len(load_prices(raw, start=_day(raw.index, 3))) == 5
    assert list(load_prices(raw, drop=["C"]).columns) == ["A", "B"]


def test_delisting_message_names_the_last_price_date() -> None:
    raw = _panel(8)
    raw.iloc[-2:, 0] = np.nan
    last = _day(raw.index, 5)
    with pytest.raises(DataError) as info:
        validate_prices(raw)
    assert str(info.value) == (
        f"price panel: asset 'A' has no prices after {last} (delisted, or its data ends "
        f"early; 2 date(s) missing to {_day(raw.index, 7)}): end the panel there with "
        f"--end {last} (end='{last}' in Python), or leave the asset out with --drop A "
        "(drop=['A'] in Python)."
    )
    assert len(load_prices(raw, end=last)) == 6


def test_long_gap_message_names_max_fill_both_ways() -> None:
    raw = _panel(10)
    raw.iloc[2:6, 1] = np.nan
    with pytest.raises(DataError, match=r"--max-fill 4 \(max_fill=4 in Python\)"):
        validate_prices(raw, max_fill=3)


def test_asset_name_with_space_is_quoted_for_the_cli() -> None:
    raw = _panel(6, ("A", "B C"))
    raw.iloc[:2, 1] = np.nan
    with pytest.raises(DataError, match=r"--drop \"B C\" \(drop=\['B C'\] in Python\)"):
        validate_prices(raw)


def test_empty_column_suggests_drop() -> None:
    raw = _panel(4)
    raw["EMPTY"] = np.nan
    with pytest.raises(
        DataError, match=r"'EMPTY' has no prices at all.*--drop EMPTY \(drop=\['EMPTY'\] in"
    ):
        validate_prices(raw)


def test_a_date_blank_only_for_the_assets_kept_is_a_gap_not_a_holiday():
    from neuralfolio.data import synthetic_prices

    p = synthetic_prices(3, 60, seed=0)
    p.iloc[20:28, :2] = np.nan  # eight days missing for A0 and A1, A2 still trades
    with pytest.raises(DataError, match=r"8 missing prices in a row"):
        load_prices(p, assets=["A0", "A1"])
    p.iloc[40, :] = np.nan  # a real holiday: blank in the whole panel
    with pytest.warns(DataWarning, match="no asset has a price"):
        kept = load_prices(p.iloc[30:], assets=["A0", "A1"])
    assert p.index[40] not in kept.index and len(kept) == 29
