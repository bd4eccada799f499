"""Tests for neuralfolio.data._loaders and the bundled data sets."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuralfolio.data import DATASETS, list_datasets, load_dataset, load_prices
from neuralfolio.data._loaders import read_price_file
from neuralfolio.errors import DataError, DataWarning

BUNDLED = r"Bundled data sets: sp500, factors, gfc"


def _small() -> pd.DataFrame:
    """A clean panel with exactly representable prices and no index freq (as files give)."""
    index = pd.DatetimeIndex(["2021-03-01", "2021-03-02", "2021-03-03", "2021-03-04"])
    return pd.DataFrame(
        {"AAA": [10.5, 10.75, 11.0, 10.25], "BBB": [200.0, 201.5, 199.25, 202.0]}, index=index
    )


# --- unreadable files -------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(
        DataError, match=rf"File not found: {re.escape(str(path))}\. Check the path.*sp500"
    ):
        load_prices(path)


def test_missing_file_given_as_string(tmp_path: Path) -> None:
    path = str(tmp_path / "sub" / "prices")
    with pytest.raises(DataError, match=rf"File not found: {re.escape(path)}"):
        load_prices(path)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=rf"{re.escape(str(tmp_path))} is a directory; give the path of a CSV"
    ):
        load_prices(tmp_path)


def test_unsupported_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prices.xlsx"
    path.write_bytes(b"PK\x03\x04 not really excel")
    with pytest.raises(
        DataError, match=r"prices\.xlsx: unsupported file type '\.xlsx'\. Use CSV .*Parquet"
    ):
        load_prices(path)


def test_corrupt_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(DataError, match=r"Could not read .*x\.parquet as PARQUET"):
        load_prices(path)


def test_binary_garbage_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(
        DataError, match=r"(?s)Could not read .*garbage\.csv as CSV.*dates in the first column"
    ):
        load_prices(path)


def test_csv_with_no_asset_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dates_only.csv"
    path.write_text("date\n2020-01-01\n2020-01-02\n")
    with pytest.raises(
        DataError, match=r"dates_only\.csv: no asset columns found\. Expected dates in the first"
    ):
        load_prices(path)


def test_read_price_file_returns_raw_contents(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    _small().to_csv(path)
    raw = read_price_file(path)
    assert list(raw.columns) == ["AAA", "BBB"]
    assert raw.shape == (4, 2)


# --- content errors through files -------------------------------------------------------------


def test_csv_non_numeric_cell_names_asset_date_value_and_file(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("date,A,B\n2020-01-01,1,2\n2020-01-02,2,abc\n2020-01-03,3,4\n")
    with pytest.raises(
        DataError,
        match=r"p\.csv: column 'B' is not numeric: value 'abc' on 2020-01-02.*fix or remove",
    ):
        load_prices(path)


def test_csv_bool_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("date,A,B\n2020-01-01,1,True\n2020-01-02,2,False\n")
    with pytest.raises(DataError, match=r"column 'B' holds true/false values"):
        load_prices(path)


def test_csv_non_positive_price(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("date,A,B\n2020-01-01,1,2\n2020-01-02,0,3\n")
    with pytest.raises(
        DataError, match=r"asset 'A' has a non-positive price .*0\.0.* on 2020-01-02"
    ):
        load_prices(path)


@pytest.mark.filterwarnings("ignore:Could not infer format:UserWarning")
def test_csv_non_date_label_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("date,A\n2020-01-01,1\ntotal,2\n")
    with pytest.raises(
        DataError, match=r"p\.csv: 1 row label\(s\) are not dates, the first is 'total'"
    ):
        load_prices(path)


def test_csv_duplicate_dates(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("date,A\n2020-01-01,1\n2020-01-02,2\n2020-01-02,2\n")
    with pytest.raises(DataError, match=r"duplicate date\(s\) 2020-01-02\. Keep one row per date"):
        load_prices(path)


def test_not_a_source_type_is_refused() -> None:
    with pytest.raises(DataError, match=r"Cannot load prices from a int"):
        load_prices(42)  # type: ignore[arg-type]


# --- unknown names ----------------------------------------------------------------------------


def test_unknown_dataset_suggests_close_name() -> None:
    with pytest.raises(
        DataError, match=rf"Unknown dataset 'sp5000'\. Did you mean 'sp500'\? {BUNDLED}"
    ):
        load_prices("sp5000")


def test_load_dataset_unknown_name_lists_bundled() -> None:
    with pytest.raises(DataError, match=rf"Unknown dataset 'nope'\. {BUNDLED}") as info:
        load_dataset("nope")
    assert "Did you mean" not in str(info.value)


def test_unknown_asset_is_named() -> None:
    with pytest.raises(
        DataError, match=r"DataFrame: unknown asset\(s\) \['ZZZ'\]\. Available: AAA, BBB\."
    ):
        load_prices(_small(), assets=["AAA", "ZZZ"])


def test_unknown_asset_in_bundled_set() -> None:
    with pytest.raises(DataError, match=r"dataset 'gfc': unknown asset\(s\) \['AAPL'\]"):
        load_prices("gfc", assets=["AAPL"])


def test_assets_selects_and_orders_columns() -> None:
    out = load_prices(_small(), assets=["BBB", "AAA"])
    assert list(out.columns) == ["BBB", "AAA"]
    np.testing.assert_array_equal(out["AAA"].to_numpy(), _small()["AAA"].to_numpy())


# --- start / end ------------------------------------------------------------------------------


def test_start_cuts_before_validation() -> None:
    raw = _small()
    raw.iloc[0:2, 1] = np.nan  # BBB not yet listed on the first two dates
    with pytest.raises(
        DataError, match=r"asset 'BBB' has no prices before 2021-03-03 \(listed late"
    ):
        load_prices(raw)
    out = load_prices(raw, start="2021-03-03")
    assert list(out.index) == list(raw.index[2:])
    assert list(out.columns) == ["AAA", "BBB"]
    assert not out.isna().to_numpy().any()


def test_start_and_end_are_inclusive() -> None:
    out = load_prices(_small(), start="2021-03-02", end="2021-03-03")
    assert list(out.index) == list(pd.DatetimeIndex(["2021-03-02", "2021-03-03"]))


def test_empty_date_range_raises_with_coverage() -> None:
    with pytest.raises(
        DataError,
        match=(
            r"DataFrame: no dates between 2030-01-01 and None\. "
            r"The data covers 2021-03-01\.\.2021-03-04\."
        ),
    ):
        load_prices(_small(), start="2030-01-01")


def test_range_leaving_one_date_raises() -> None:
    with pytest.raises(DataError, match=r"1 row\(s\); a price panel needs at least two dates"):
        load_prices(_small(), start="2021-03-04")


def test_start_end_on_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    _small().to_csv(path)
    out = load_prices(path, start="2021-03-02", end="2021-03-03")
    assert list(out.index) == list(pd.DatetimeIndex(["2021-03-02", "2021-03-03"]))


def test_max_fill_is_passed_through() -> None:
    raw = _small()
    raw.iloc[1:3, 0] = np.nan
    with pytest.raises(DataError, match=r"asset 'AAA' has 2 missing prices.*max_fill=1"):
        load_prices(raw, max_fill=1)
    with pytest.warns(DataWarning, match=r"AAA on 2021-03-02, 2021-03-03"):
        out = load_prices(raw, max_fill=2)
    assert (out["AAA"].iloc[1:3] == 10.5).all()


# --- round trips ------------------------------------------------------------------------------


def test_csv_round_trip_matches_dataframe(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    _small().to_csv(path)
    pd.testing.assert_frame_equal(load_prices(path), load_prices(_small()))


def test_tsv_round_trip_matches_dataframe(tmp_path: Path) -> None:
    path = tmp_path / "prices.tsv"
    _small().to_csv(path, sep="\t")
    pd.testing.assert_frame_equal(load_prices(path), load_prices(_small()))


def test_parquet_round_trip_matches_dataframe(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    _small().to_parquet(path)
    pd.testing.assert_frame_equal(load_prices(path), load_prices(_small()))


def test_parquet_with_date_column_matches_dataframe(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    _small().rename_axis("Date").reset_index().to_parquet(path, index=False)
    pd.testing.assert_frame_equal(load_prices(path), load_prices(_small()))


# --- bundled data sets ------------------------------------------------------------------------


def test_list_datasets_order() -> None:
    assert [d.name for d in list_datasets()] == ["sp500", "factors", "gfc"]
    assert list(DATASETS) == ["sp500", "factors", "gfc"]


def test_sp500_bundled() -> None:
    prices = load_prices("sp500")
    assert prices.shape[1] == 20
    assert prices.index[0].year == 1990
    assert prices.index[-1].year == 2022
    assert prices.index.is_monotonic_increasing
    assert not prices.isna().to_numpy().any()


def test_factors_bundled() -> None:
    prices = load_prices("factors")
    assert list(prices.columns) == ["MTUM", "QUAL", "SIZE", "USMV", "VLUE"]
    assert not prices.isna().to_numpy().any()


def test_gfc_bundled() -> None:
    prices = load_prices("gfc")
    assert list(prices.columns) == ["BAC", "JPM", "GE", "HD"]
    assert prices.index[0] >= pd.Timestamp("2005-01-01")
    assert prices.index[-1] <= pd.Timestamp("2010-12-31")
    assert len(prices) > 1000


def test_gfc_is_a_cut_of_sp500() -> None:
    sp = load_prices("sp500").loc["2005-01-01":"2010-12-31", ["BAC", "JPM", "GE", "HD"]]
    pd.testing.assert_frame_equal(load_prices("gfc"), sp, check_freq=False)
