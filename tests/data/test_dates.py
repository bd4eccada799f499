"""Dates in price files: mixed UTC offsets, dates that do not parse, where the date column is."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from neuralfolio.cli import app
from neuralfolio.data import load_prices
from neuralfolio.errors import DataError, DataWarning

# Two rows at 10:00 local time on one day, five hours apart: the offsets matter.
CLASHING = (
    "Date,AAPL,MSFT\n2024-01-02T10:00:00+01:00,1,2\n2024-01-02T10:00:00-05:00,1.1,2.1\n"
    "2024-01-03T10:00:00-05:00,1.2,2.2\n"
)


def _csv(tmp_path: Path, text: str, name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _one_line(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message


# --- mixed UTC offsets ------------------------------------------------------------------------


def test_daily_dates_with_mixed_offsets_keep_their_local_dates_and_name_two(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "Date,AAPL,MSFT\n2024-01-02T00:00:00+01:00,1,2\n2024-01-03T00:00:00-05:00,1.1,2.1\n"
        "2024-01-04T00:00:00-05:00,1.2,2.2\n",
    )
    with pytest.warns(DataWarning) as caught:
        out = load_prices(path)
    assert list(out.index) == list(pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-04"]))
    message = str(caught[0].message)
    _one_line(message)
    assert message.startswith(f"{path}: the dates carry different UTC offsets (+01:00 on "
                              "2024-01-02, -05:00 on 2024-01-03, as with daylight saving time)")
    assert "write every date with the same UTC offset" in message and "in UTC" in message


@pytest.mark.parametrize(
    "rows, how",
    [
        (CLASHING, "would read as the same time"),
        # 00:30+01:00 is 23:30 UTC the day before, after 20:00-05:00 (01:00 UTC): swapped.
        ("Date,A\n2024-01-02T00:30:00+01:00,1\n2024-01-01T20:00:00-05:00,2\n"
         "2024-01-03T00:30:00+01:00,3\n", "would read in the wrong order"),
    ],
)
def test_offsets_that_matter_are_refused_with_both_dates(tmp_path: Path, rows, how) -> None:
    path = _csv(tmp_path, rows)
    with pytest.raises(DataError) as info:
        load_prices(path)
    message = str(info.value)
    _one_line(message)
    first, second = (line.split(",")[0] for line in rows.splitlines()[1:3])
    assert message.startswith(f"{path}: the dates mix UTC offsets ({first!r} and {second!r})")
    assert how in message
    assert "write every date with the same UTC offset" in message and "all in UTC" in message


def test_dates_with_and_without_an_offset_are_not_called_not_dates(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "Date,A\n2024-01-02,1\n2024-01-03T00:00:00+01:00,2\n2024-01-04,3\n",
    )
    with pytest.warns(DataWarning, match=r"no offset on 2024-01-02, \+01:00 on 2024-01-03\)"):
        out = load_prices(path)
    assert list(out.index.date.astype(str)) == ["2024-01-02", "2024-01-03", "2024-01-04"]


def test_one_offset_throughout_loads_without_a_warning(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "Date,A\n2024-01-02T00:00:00+01:00,1\n2024-01-03T00:00:00+01:00,2\n",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = load_prices(path)
    assert len(out) == 2


def test_data_show_on_clashing_offsets_is_one_line_without_traceback(tmp_path, cli_error):
    path = _csv(tmp_path, CLASHING, "mixed.csv")
    result = CliRunner().invoke(app, ["data", "show", str(path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError)
    _one_line(str(result.exception))
    assert "Traceback" not in result.output
    err = cli_error("data", "show", path)  # the entry point: exit 2, "error: ..." on stderr
    assert err.startswith(f"error: {path}: the dates mix UTC offsets")


# --- other dates that do not parse ------------------------------------------------------------


@pytest.mark.parametrize(
    "row, shown",
    [
        ("2024-13-45", "the first is '2024-13-45'."),
        ("", "the first is blank (the row after 2024-01-02)."),
        ("Jan 3 2024", "the first is 'Jan 3 2024' (a date written unlike the first, "
                       "'2024-01-02': write every date the same way)."),
    ],
)
def test_a_bad_date_is_one_line_naming_the_file_and_value(tmp_path: Path, row, shown) -> None:
    path = _csv(tmp_path, f"Date,A\n2024-01-02,1\n{row},2\n2024-01-04,3\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pandas "Could not infer format" on the way
        with pytest.raises(DataError) as info:
            load_prices(path)
    message = str(info.value)
    _one_line(message)
    assert message.startswith(f"{path}: 1 row label(s) are not dates, {shown}")
    assert "The date column 'Date' must hold dates" in message


def test_iso_dates_with_and_without_a_time_all_parse(tmp_path: Path) -> None:
    path = _csv(tmp_path, "Date,A\n2024-01-02,1\n2024-01-03 16:00,2\n2024-01-04,3\n")
    out = load_prices(path)
    assert list(out.index) == list(pd.DatetimeIndex(["2024-01-02", "2024-01-03 16:00",
                                                     "2024-01-04"]))


# --- where the dates are ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Date", "DATE", "datetime", "Time", "timestamp"])
def test_a_date_column_that_is_not_first_is_the_index(tmp_path: Path, name: str) -> None:
    # AAPL repeats a price, which as the index would read as a duplicate date.
    path = _csv(tmp_path, f"AAPL,{name},MSFT\n1,2024-01-02,2\n1,2024-01-03,2.1\n"
                          "1.2,2024-01-04,2.2\n")
    out = load_prices(path)
    assert list(out.columns) == ["AAPL", "MSFT"]
    assert list(out.index) == list(pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-04"]))
    assert out["AAPL"].tolist() == [1.0, 1.0, 1.2]


def test_a_bad_value_in_a_date_column_that_is_not_first_names_that_column(tmp_path) -> None:
    path = _csv(tmp_path, "AAPL,Date,MSFT\n1,2024-01-02,2\n1.1,2024-13-03,2.1\n")
    with pytest.raises(DataError, match=r"the first is '2024-13-03'\. The date column 'Date' "
                                        r"must hold dates"):
        load_prices(path)


def test_a_first_column_that_is_not_dates_is_a_clear_error(tmp_path: Path) -> None:
    path = _csv(tmp_path, "Name,AAPL,MSFT\nfoo,1,2\nbar,1.1,2.1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError) as info:
            load_prices(path)
    message = str(info.value)
    _one_line(message)
    assert message == (f"{path}: 2 row label(s) are not dates, the first is 'foo'. The first "
                       "column must hold dates (for example 2020-01-31), one row per trading "
                       "day.")


# --- duplicate asset columns ------------------------------------------------------------------


def test_duplicate_asset_columns_are_named_from_the_raw_header(tmp_path: Path) -> None:
    path = _csv(tmp_path, "Date,BAC,JPM,BAC\n2024-01-02,1,2,3\n2024-01-03,2,3,4\n")
    with pytest.raises(DataError) as info:
        load_prices(path)
    message = str(info.value)
    _one_line(message)
    assert message.startswith(f"{path}: column name(s) ['BAC'] appear more than once")
    assert "delete or rename the duplicates" in message


def test_a_column_named_bac_1_without_bac_loads(tmp_path: Path) -> None:
    path = _csv(tmp_path, "Date,BAC.1,JPM\n2024-01-02,1,2\n2024-01-03,2,3\n")
    assert list(load_prices(path).columns) == ["BAC.1", "JPM"]
