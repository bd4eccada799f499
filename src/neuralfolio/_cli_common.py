"""Options and helpers shared by the command-line modules (no library logic here)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

__all__ = ["AssetsOpt", "DropOpt", "EndOpt", "JsonOpt", "LayoutOpt", "MaxFillOpt", "StartOpt",
           "load", "names", "print_json"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead.")]
StartOpt = Annotated[str | None, typer.Option(help="First date kept, e.g. 2005-01-01.")]
EndOpt = Annotated[str | None, typer.Option(help="Last date kept.")]
AssetsOpt = Annotated[
    str | None, typer.Option(help="Comma-separated asset columns to keep, in this order, "
                                  "e.g. BAC,JPM.")
]
DropOpt = Annotated[
    str | None, typer.Option(help="Comma-separated columns to leave out (e.g. a Volume "
                                  "column).")
]
LayoutOpt = Annotated[str, typer.Option(
    help="File layout: auto (detect), wide (dates, then one column per asset) or long "
         "(date, ticker and price columns; pivoted to wide).")]
MaxFillOpt = Annotated[int, typer.Option(
    help="Longest gap of missing prices (trading days) forward-filled with a warning.")]


def names(value: str | None) -> list[str] | None:
    """``"A, B,C"`` -> ``["A", "B", "C"]``; None or empty -> None."""
    return [a.strip() for a in value.split(",") if a.strip()] if value else None


def print_json(obj) -> None:
    """``obj`` as indented JSON on stdout (dates and other objects as strings)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def load(source, start=None, end=None, assets=None, max_fill=None, drop=None,
         layout: str = "auto"):
    """The validated price panel the data options of a command name."""
    from neuralfolio.data import MAX_FILL_DEFAULT, load_prices

    return load_prices(source, start=start, end=end, assets=names(assets), drop=names(drop),
                       layout=layout,
                       max_fill=MAX_FILL_DEFAULT if max_fill is None else max_fill)
