"""File layouts: separators, where the dates are, integer labels, time zones, long tables."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neuralfolio.data as nfd
from neuralfolio.data import load_prices, validate_prices
from neuralfolio.data._loaders import read_price_file
from neuralfolio.errors import DataError, DataWarning


def _small() -> pd.DataFrame:
    """Exactly representable prices, as a file would give them (no index freq)."""
    index = pd.DatetimeIndex(["2021-03-01", "2021-03-02", "2021-03-03", "2021-03-04"])
    return pd.DataFrame(
        {"AAA": [10.5, 10.75, 11.0, 10.25], "BBB": [200.0, 201.5, 199.25, 202.0]}, index=index
    )


def _long(frame: pd.DataFrame, names=("Date", "Ticker", "Close")) -> pd.DataFrame:
    """One row per (date, asset), sorted by asset then date."""
    flat = frame.rename_axis(names[0]).reset_index()
    return flat.melt(id_vars=names[0], var_name=names[1], value_name=names[2])


# --- separators -------------------------------------------------------------------------------


def test_semicolon_csv_with_decimal_commas(tmp_path: Path) -> None:
    path = tmp_path / "eu.csv"
    path.write_text(
        "Datum;AAA;BBB\n2021-03-01;10,5;200\n2021-03-02;10,75;201,5\n"
        "2021-03-03;11;199,25\n2021-03-04;10,25;202\n"
    )
    pd.testing.assert_frame_equal(load_prices(path), load_prices(_small()))


def test_semicolon_csv_with_decimal_points(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    _small().to_csv(path, sep=";")
    pd.testing.assert_frame_equal(load_prices(path), load_prices(_small()))


@pytest.mark.parametrize("suffix", [".txt", ".tsv", ".csv"])
def test_tab_separated_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"p{suffix}"
    _small().to_csv(path, sep="\t")
    pd.testing.assert_frame_equal(load_prices(path), load_prices(_small()))


def test_gzipped_semicolon_csv(tmp_path: Path) -> None:
    path = tmp_path / "p.csv.gz"
    with gzip.open(path, "wt") as fh:
        _small().to_csv(fh, sep=";", decimal=",")
    pd.testing.assert_frame_equal(load_prices(path), load_prices(_small()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sep=st.sampled_from([",", ";", "\t", "|"]),
    decimal_comma=st.booleans(),
    quarters=st.lists(st.integers(1, 40_000), min_size=6, max_size=6),
)
def test_separators_round_trip(sep: str, decimal_comma: bool, quarters: list[int]) -> None:
    import tempfile

    frame = pd.DataFrame(
        np.array(quarters, dtype=float).reshape(3, 2) / 4,  # exactly representable
        index=pd.DatetimeIndex(["2021-03-01", "2021-03-02", "2021-03-03"]),
        columns=["AAA", "BBB"],
    )
    decimal = "," if decimal_comma and sep != "," else "."
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.csv"
        frame.to_csv(path, sep=sep, decimal=decimal)
        pd.testing.assert_frame_equal(load_prices(path), load_prices(frame))


# --- where the dates are ----------------------------------------------------------------------


def test_csv_written_with_the_default_index(tmp_path: Path) -> None:
    # df.reset_index().to_csv(path) writes ",date,AAA,BBB" then rows "0,2021-03-01,...".
    path = tmp_path / "p.csv"
    _small().rename_axis("date").reset_index().to_csv(path)
    out = load_prices(path)
    assert out.index[0] == pd.Timestamp("2021-03-01")
    pd.testing.assert_frame_equal(out, load_prices(_small()))


def test_date_column_last(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "AAA,BBB,Date\n10.5,200,2021-03-01\n10.75,201.5,2021-03-02\n"
        "11,199.25,2021-03-03\n10.25,202,2021-03-04\n"
    )
    pd.testing.assert_frame_equal(load_prices(path), load_prices(_small()))


def test_date_column_found_by_content(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("AAA,when,BBB\n1,2021-03-01,2\n2,2021-03-02,3\n")
    out = load_prices(path)
    assert list(out.columns) == ["AAA", "BBB"]
    assert out.index[0] == pd.Timestamp("2021-03-01")


@pytest.mark.filterwarnings("ignore:Could not infer format:UserWarning")
def test_date_column_not_first_with_a_bad_label_names_it(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("AAA,Date\n1,2021-03-01\n2,total\n")
    with pytest.raises(DataError, match=r"1 row label\(s\) are not dates, the first is 'total'"):
        load_prices(path)


def test_dataframe_with_a_date_column_and_default_index() -> None:
    frame = _small().rename_axis("Date").reset_index()
    pd.testing.assert_frame_equal(load_prices(frame), load_prices(_small()))


def test_integer_row_labels_are_refused_not_read_as_1970(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("n,AAA\n1,10\n2,11\n3,12\n")
    with pytest.raises(
        DataError,
        match=r"p\.csv: the row labels are plain numbers \(1, 2, 3, \.\.\.\), not dates\. "
        r"The first column must hold dates",
    ):
        load_prices(path)


def test_dataframe_without_dates_is_refused() -> None:
    frame = _small().reset_index(drop=True)
    with pytest.raises(DataError, match=r"plain numbers \(0, 1, 2, .*df\.set_index\('date'\)"):
        validate_prices(frame)
    with pytest.raises(DataError, match=r"plain numbers"):
        load_prices(frame)


def test_a_number_among_date_labels_is_named() -> None:
    frame = _small()
    frame.index = pd.Index(["2021-03-01", "2021-03-02", 5, "2021-03-04"], dtype=object)
    with pytest.raises(DataError, match=r"1 row label\(s\) are not dates, the first is 5\."):
        validate_prices(frame)


def test_mixed_utc_offsets_keep_each_local_date(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "date,AAA\n2020-01-02 00:00:00+00:00,1\n2020-01-03 00:00:00-05:00,2\n"
        "2020-01-06 00:00:00-05:00,3\n"
    )
    with pytest.warns(DataWarning, match=r"different UTC offsets .* kept each one's local date"):
        out = load_prices(path)
    assert out.index.tz is None
    assert list(out.index) == list(pd.DatetimeIndex(["2020-01-02", "2020-01-03", "2020-01-06"]))


def test_mixed_utc_offsets_warn_once_with_a_date_range(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "date,AAA\n2020-01-02 00:00:00+00:00,1\n2020-01-03 00:00:00-05:00,2\n"
        "2020-01-06 00:00:00+01:00,3\n"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = load_prices(path, start="2020-01-03")
    assert len([w for w in caught if issubclass(w.category, DataWarning)]) == 1
    assert len(out) == 2


# --- long tables ------------------------------------------------------------------------------


def test_long_csv_is_explained_not_given_destructive_advice(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    _long(_small()).to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load_prices(path)
    message = str(info.value)
    assert "looks like a long table" in message
    assert "dates in 'Date', assets in 'Ticker', prices in 'Close'" in message
    assert f"load_prices({str(path)!r}, layout='long')" in message
    assert "--layout long" in message
    assert "duplicated(keep=" not in message


def test_long_csv_with_layout_long_is_pivoted(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    _long(_small()).to_csv(path, index=False)
    pd.testing.assert_frame_equal(load_prices(path, layout="long"), load_prices(_small()))
    raw = read_price_file(path, layout="long")
    assert list(raw.columns) == ["AAA", "BBB"]


def test_long_ohlcv_prefers_the_adjusted_close(tmp_path: Path) -> None:
    long = _long(_small(), ("Date", "Symbol", "Adj Close"))
    long.insert(2, "Open", 1.0)
    long.insert(3, "Close", long["Adj Close"] * 2)
    long["Volume"] = 1_000_000
    path = tmp_path / "ohlcv.csv"
    long.sample(frac=1.0, random_state=0).to_csv(path, index=False)  # rows in any order
    out = load_prices(path, layout="long")
    pd.testing.assert_frame_equal(out, load_prices(_small())[list(out.columns)])


@pytest.mark.parametrize(
    "names",
    [
        ("date", "symbol", "price"),
        ("timestamp", "asset", "value"),
        ("Date", "PERMNO", "PRC"),
        ("datetime", "name", "adj_close"),
    ],
)
def test_long_column_names_are_recognized(names: tuple[str, str, str]) -> None:
    out = load_prices(_long(_small(), names), layout="long")
    pd.testing.assert_frame_equal(out, load_prices(_small()))


def test_long_dataframe_is_refused_in_auto_layout() -> None:
    with pytest.raises(DataError, match=r"long table .*load_prices\(df, layout='long'\)"):
        load_prices(_long(_small()))


def test_long_dataframe_with_dates_as_index() -> None:
    long = _long(_small()).set_index("Date")
    with pytest.raises(DataError, match="looks like a long table"):
        load_prices(long)
    pd.testing.assert_frame_equal(load_prices(long, layout="long"), load_prices(_small()))


def test_long_parquet(tmp_path: Path) -> None:
    path = tmp_path / "long.parquet"
    _long(_small()).to_parquet(path, index=False)
    pd.testing.assert_frame_equal(load_prices(path, layout="long"), load_prices(_small()))


def test_long_with_a_late_listing_goes_to_the_missing_data_policy() -> None:
    long = _long(_small())
    dates = pd.to_datetime(long["Date"])
    long = long[(dates > "2021-03-01") & ~((long["Ticker"] == "BBB") & (dates < "2021-03-03"))]
    with pytest.raises(DataError, match=r"asset 'BBB' has no prices before 2021-03-03"):
        load_prices(long, layout="long")


def test_wide_layout_skips_the_long_check() -> None:
    with pytest.raises(DataError, match=r"duplicate date"):
        load_prices(_long(_small()).set_index("Date")[["Close"]], layout="wide")


def test_unknown_layout_is_refused() -> None:
    with pytest.raises(DataError, match=r"layout must be one of 'auto', 'wide', 'long'"):
        load_prices(_small(), layout="tall")  # type: ignore[arg-type]


def test_pivot_long_prices_is_public() -> None:
    assert "pivot_long_prices" in nfd.__all__
    wide = nfd.pivot_long_prices(_long(_small()))
    assert list(wide.columns) == ["AAA", "BBB"]
    assert wide.index.is_monotonic_increasing


def test_pivot_long_prices_with_explicit_columns() -> None:
    long = _long(_small(), ("when", "who", "px"))
    long["px_other"] = 1.0
    wide = nfd.pivot_long_prices(long, date="when", asset="who", value="px")
    pd.testing.assert_frame_equal(validate_prices(wide), load_prices(_small()))


def test_pivot_long_prices_names_duplicate_pairs() -> None:
    long = _long(_small())
    long = pd.concat([long, long.iloc[[0, 5]]])
    with pytest.raises(
        DataError,
        match=r"2 \(date, asset\) pair\(s\) appear more than once: 2021-03-01 AAA; "
        r"2021-03-02 BBB\. Keep one row per date and asset",
    ):
        nfd.pivot_long_prices(long)


def test_pivot_long_prices_unknown_column() -> None:
    with pytest.raises(
        DataError, match=r"no column 'px' for the prices\. Columns: Date, Ticker, Close\."
    ):
        nfd.pivot_long_prices(_long(_small()), value="px")


def test_pivot_long_prices_cannot_find_the_prices() -> None:
    long = _long(_small(), ("Date", "Ticker", "Mid"))
    long["Bid"] = 1.0
    with pytest.raises(
        DataError, match=r"cannot tell which column holds the prices.*value='\.\.\.'"
    ):
        nfd.pivot_long_prices(long)


def test_pivot_long_prices_does_not_take_volume_as_prices() -> None:
    long = _long(_small(), ("Date", "Ticker", "Mid"))
    long = long.assign(Volume=1000).drop(columns="Mid")
    with pytest.raises(DataError, match="cannot tell which column holds the prices"):
        nfd.pivot_long_prices(long)


def test_pivot_long_prices_takes_the_only_numeric_column() -> None:
    wide = nfd.pivot_long_prices(_long(_small(), ("Date", "Ticker", "Mid")))
    pd.testing.assert_frame_equal(validate_prices(wide), load_prices(_small()))


def test_pivot_long_prices_blank_asset_name() -> None:
    long = _long(_small()).astype({"Ticker": object})
    long.loc[1, "Ticker"] = None
    with pytest.raises(DataError, match=r"1 row\(s\) have no asset name in 'Ticker'"):
        nfd.pivot_long_prices(long)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(2, 8).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(0.5, 1000.0), min_size=3 * n, max_size=3 * n),
            st.permutations(range(3 * n)),
        )
    )
)
def test_long_round_trip(case: tuple[list[float], list[int]]) -> None:
    values, order = case
    n = len(values) // 3
    wide = pd.DataFrame(
        np.array(values).reshape(n, 3),
        index=pd.DatetimeIndex(list(pd.bdate_range("2020-01-01", periods=n))),
        columns=["X", "Y", "Z"],
    )
    shuffled = _long(wide).iloc[order]
    out = load_prices(shuffled, layout="long")
    pd.testing.assert_frame_equal(out, load_prices(wide)[list(out.columns)])
    assert sorted(out.columns) == ["X", "Y", "Z"]
