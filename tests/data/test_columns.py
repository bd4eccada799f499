"""Choosing columns: drop=, columns that are not prices, duplicate column names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralfolio.data import load_prices, validate_prices
from neuralfolio.errors import DataError


def _dates(n: int) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(list(pd.bdate_range("2020-01-01", periods=n)))


def _prices(n: int = 30, columns: tuple[str, ...] = ("BAC", "JPM")) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    values = 30.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, len(columns))), axis=0))
    return pd.DataFrame(values, index=_dates(n), columns=list(columns))


def _volumes(n: int = 30, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(5_000_000, 50_000_000, n)


# --- drop= ------------------------------------------------------------------------------------


def test_drop_leaves_columns_out() -> None:
    out = load_prices("gfc", drop=["GE", "HD"])
    assert list(out.columns) == ["BAC", "JPM"]
    pd.testing.assert_frame_equal(out, load_prices("gfc")[["BAC", "JPM"]])


def test_drop_accepts_a_single_name() -> None:
    assert list(load_prices("gfc", drop="GE").columns) == ["BAC", "JPM", "HD"]  # type: ignore[arg-type]


def test_drop_unknown_name_lists_available() -> None:
    with pytest.raises(
        DataError,
        match=r"dataset 'gfc': unknown column\(s\) to drop \['XOM'\]\. "
        r"Available: BAC, JPM, GE, HD\.",
    ):
        load_prices("gfc", drop=["XOM"])


def test_drop_and_assets_naming_the_same_column_is_refused() -> None:
    with pytest.raises(DataError, match=r"\['GE'\] both kept .* and dropped"):
        load_prices("gfc", assets=["BAC", "GE"], drop=["GE"])


def test_drop_with_assets_and_dates() -> None:
    out = load_prices("gfc", assets=["JPM", "BAC"], drop=["HD"], start="2008-01-01")
    assert list(out.columns) == ["JPM", "BAC"]
    assert out.index[0] >= pd.Timestamp("2008-01-01")


def test_drop_on_a_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("date,A,NOTES,B\n2020-01-01,1,x,2\n2020-01-02,2,y,3\n")
    out = load_prices(path, drop=["NOTES"])
    assert list(out.columns) == ["A", "B"]


def test_assets_still_work() -> None:
    assert list(load_prices("gfc", assets=["HD", "BAC"]).columns) == ["HD", "BAC"]


# --- columns that are not prices --------------------------------------------------------------


def test_volume_added_to_bundled_data_is_refused() -> None:
    # The reported problem: this used to pass validation as a fifth "asset".
    raw = load_prices("gfc")
    raw["Volume"] = _volumes(len(raw))
    with pytest.raises(DataError) as info:
        load_prices(raw)
    assert str(info.value) == (
        "DataFrame: column 'Volume' (its name says trading volume) looks like volumes or "
        "counts, not prices. Leave it out with --drop Volume (drop=['Volume'] in Python), or "
        "keep only the price columns with --assets BAC,JPM,GE,HD "
        "(assets=['BAC', 'JPM', 'GE', 'HD'] in Python). If it is a price (a high-priced share "
        "such as BRK-A, or prices in whole units of a currency such as KRW), name it in "
        "--assets (assets= in Python) to keep it."
    )
    assert list(load_prices(raw, drop=["Volume"]).columns) == ["BAC", "JPM", "GE", "HD"]


def test_unnamed_volume_column_is_refused_by_its_values() -> None:
    raw = load_prices("gfc")
    raw["X"] = _volumes(len(raw))
    with pytest.raises(DataError, match=r"column 'X' \(whole numbers with median [\d,]+\)"):
        validate_prices(raw)


@pytest.mark.parametrize(
    "name",
    [
        "Volume",
        "volume",
        "AAPL Volume",
        "AAPL_volume",
        "vol_AAPL",
        "AAPL vol",
        "open_interest",
        "Open Interest",
        "OpenInterest",
        "CL_OI",
        "shares_outstanding",
        "SharesOutstanding",
        "SHROUT",
        "Turnover",
        "trades",
        "NumTrades",
        "trade_count",
        "tick count",
    ],
)
def test_columns_named_like_counts_are_refused(name: str) -> None:
    raw = _prices(columns=("BAC", name))  # price-like values: the name alone decides
    with pytest.raises(
        DataError, match=rf"column {re.escape(repr(name))} \(its name says .*--drop"
    ):
        validate_prices(raw)


@pytest.mark.parametrize(
    "name",
    [
        "VOL",
        "OI",
        "COUNT",
        "OI-A",
        "VOL.TO",
        "BRK-A",
        "BRK.B",
        "SHARE",
        "VWAP",
        "Volume Weighted Price",
        "iShares Core S&P 500",
    ],
)
def test_plausible_asset_names_are_kept(name: str) -> None:
    raw = _prices(columns=("BAC", name))
    assert list(validate_prices(raw).columns) == ["BAC", name]


_TICKERS = st.from_regex(r"[A-Z]{1,5}([.\-][A-Z]{1,2})?", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TICKERS, min_size=1, max_size=4, unique=True))
def test_tickers_are_never_refused_by_name(tickers: list[str]) -> None:
    raw = _prices(5, tuple(tickers))
    assert list(validate_prices(raw).columns) == tickers


def test_integer_column_far_above_the_others_is_refused() -> None:
    raw = _prices()
    raw["X"] = np.random.default_rng(2).integers(40_000, 60_000, len(raw))  # < 1e5, ~1500x
    with pytest.raises(
        DataError, match=r"'X' \(whole numbers with median [\d,]+, over 1,000 times the median"
    ):
        validate_prices(raw)


def test_large_integer_single_column_is_refused() -> None:
    raw = pd.DataFrame({"X": _volumes()}, index=_dates(30))
    with pytest.raises(DataError, match=r"column 'X' \(whole numbers with median") as info:
        validate_prices(raw)
    assert "keep only the price columns" not in str(info.value)


def test_volume_named_single_column_is_refused() -> None:
    raw = pd.DataFrame({"Volume": np.linspace(10.5, 20.5, 30)}, index=_dates(30))
    with pytest.raises(DataError, match=r"column 'Volume' \(its name says trading volume\)"):
        validate_prices(raw)


def test_high_priced_share_with_cents_is_kept() -> None:
    raw = _prices()
    raw["BRK-A"] = np.linspace(500_000.25, 520_000.75, len(raw))
    assert "BRK-A" in validate_prices(raw).columns


@pytest.mark.parametrize("median", [3_000, 9_000])
def test_whole_number_prices_of_plausible_size_are_kept(median: int) -> None:
    raw = _prices()  # ~30 USD
    raw["7203.T"] = np.random.default_rng(3).integers(median - 100, median + 100, len(raw))
    assert "7203.T" in validate_prices(raw).columns


def test_declaring_a_column_an_asset_keeps_it() -> None:
    raw = _prices()
    raw["BRKA"] = np.arange(500_000, 500_000 + len(raw))  # whole-dollar closes
    with pytest.raises(DataError, match=r"'BRKA' \(whole numbers") as info:
        load_prices(raw)
    assert "--drop BRKA" in str(info.value)
    assert "--assets BAC,JPM (assets=['BAC', 'JPM'] in Python)" in str(info.value)
    out = load_prices(raw, assets=["BAC", "JPM", "BRKA"])
    assert list(out.columns) == ["BAC", "JPM", "BRKA"]
    assert "BRKA" in validate_prices(raw, declared_assets=["BRKA"]).columns


def test_declaring_a_column_named_like_a_count_keeps_it() -> None:
    raw = _prices(columns=("BAC", "Turnover Fund"))
    assert list(load_prices(raw, assets=["BAC", "Turnover Fund"]).columns) == [
        "BAC",
        "Turnover Fund",
    ]


def test_every_count_column_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    frame = _prices(10)
    frame["BAC Volume"] = _volumes(10)
    frame["JPM Volume"] = _volumes(10, seed=2)
    frame.to_csv(path)
    with pytest.raises(
        DataError,
        match=r"columns 'BAC Volume' \(.*\); 'JPM Volume' \(.*\) look like volumes.*"
        r"Leave them out with --drop \"BAC Volume,JPM Volume\" "
        r"\(drop=\['BAC Volume', 'JPM Volume'\] in Python\), or keep only the price columns "
        r"with --assets BAC,JPM",
    ):
        load_prices(path)
    assert list(load_prices(path, drop=["BAC Volume", "JPM Volume"]).columns) == ["BAC", "JPM"]


def test_volume_with_zero_days_is_refused_as_volume_not_as_bad_price() -> None:
    raw = _prices()
    raw["X"] = _volumes()
    raw.iloc[3, 2] = 0
    with pytest.raises(DataError, match=r"'X' \(whole numbers"):
        validate_prices(raw)


def test_plain_integer_prices_pass() -> None:
    raw = pd.DataFrame({"A": [100, 101, 103], "B": [20, 21, 19]}, index=_dates(3))
    assert validate_prices(raw).shape == (3, 2)


# --- duplicate column names -------------------------------------------------------------------


@pytest.mark.parametrize("sep, suffix", [(",", "csv"), ("\t", "tsv"), (";", "csv")])
def test_duplicate_column_names_in_file_are_refused(tmp_path: Path, sep: str, suffix: str) -> None:
    path = tmp_path / f"p.{suffix}"
    path.write_text(
        sep.join(["date", "BAC", "JPM", "BAC"])
        + "\n"
        + sep.join(["2020-01-01", "1", "2", "3"])
        + "\n"
        + sep.join(["2020-01-02", "2", "3", "4"])
        + "\n"
    )
    with pytest.raises(
        DataError, match=r"column name\(s\) \['BAC'\] appear more than once in the header"
    ) as info:
        load_prices(path)
    assert "BAC.1" in str(info.value)


def test_similar_but_distinct_names_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("date,BAC,BAC.1\n2020-01-01,1,2\n2020-01-02,2,3\n")
    assert list(load_prices(path).columns) == ["BAC", "BAC.1"]


def test_text_column_message_offers_drop(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("date,A,Notes\n2020-01-01,1,earnings\n2020-01-02,2,\n")
    with pytest.raises(
        DataError,
        match=r"column 'Notes' is not numeric.*leave the column out with --drop Notes "
        r"\(drop=\['Notes'\] in Python\)\.",
    ):
        load_prices(path)
    assert list(load_prices(path, drop=["Notes"]).columns) == ["A"]
