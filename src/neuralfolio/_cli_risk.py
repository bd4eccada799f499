"""The ``neuralfolio risk`` command: risk report of a fixed-weight portfolio.

Registered in :mod:`neuralfolio.cli` with ``app.command("risk")(risk)``. Heavy imports
(NumPy, pandas, skfolio, SciPy, rich) happen inside the command so the CLI starts fast.
"""

from __future__ import annotations

import math
from typing import Annotated

import typer

from neuralfolio._cli_common import (
    AssetsOpt,
    DropOpt,
    EndOpt,
    JsonOpt,
    LayoutOpt,
    MaxFillOpt,
    StartOpt,
    load,
)
from neuralfolio.errors import ConfigError

__all__ = ["parse_per_asset", "parse_weights", "risk"]

_SUM_TOLERANCE = 1e-6


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_per_asset(text: str, assets: list[str], option: str) -> list[float]:
    """Finite numbers in asset order from ``1.0,2.0,...`` or ``NAME=VALUE`` pairs.

    Shared by the options that take one number per asset (``--weights``, ``--prices``).
    """
    parts = _split(text)
    if not parts:
        raise ConfigError(f"{option} is empty; give NAME=VALUE pairs or one value per asset.")
    if any("=" in p for p in parts):
        if not all("=" in p for p in parts):
            raise ConfigError(
                f"{option} mixes NAME=VALUE pairs and bare values ({text!r}); use one form."
            )
        pairs = [tuple(s.strip() for s in p.split("=", 1)) for p in parts]
        names = [n for n, _ in pairs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{option} names {dupes} more than once; give each asset once.")
        given = dict(pairs)
        missing = [a for a in assets if a not in given]
        unknown = [n for n in names if n not in assets]
        if missing or unknown:
            raise ConfigError(
                f"{option} must name every asset, {','.join(assets)}: unknown {unknown}, "
                f"missing {missing}."
            )
        values = [given[a] for a in assets]
    elif len(parts) == len(assets):
        values = parts
    else:
        raise ConfigError(
            f"{option} has {len(parts)} value(s) but there are {len(assets)} assets; give one "
            f"per asset in the order {','.join(assets)}, or NAME=VALUE pairs."
        )
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise ConfigError(f"{option} values must be numbers, got {values}.") from None
    bad = [a for a, v in zip(assets, numbers, strict=True) if not math.isfinite(v)]
    if bad:
        raise ConfigError(f"{option} must be finite numbers; check {bad}.")
    return numbers


def parse_weights(text: str, assets: list[str]) -> list[float]:
    """Weights in asset order from ``equal``, ``0.25,0.25,...`` or ``BAC=0.3,JPM=0.2,...``."""
    if text.strip().lower() == "equal":
        return [1.0 / len(assets)] * len(assets)
    weights = parse_per_asset(text, assets, "--weights")
    total = math.fsum(weights)
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ConfigError(
            f"--weights sum to {total:.6g}, not 1; normalise them (divide each by "
            f"{total:.6g}) so they sum to 1."
        )
    return weights


def _parse_numbers(text: str, option: str, kind: type) -> list:
    try:
        values = [kind(p) for p in _split(text)]
    except ValueError:
        example = "0.95,0.99" if kind is float else "1,10"
        raise ConfigError(f"{option} must be comma-separated numbers such as {example}, "
                          f"got {text!r}.") from None
    if not values:
        raise ConfigError(f"{option} is empty.")
    return values


def risk_report(prices, weights: list[float], confidences: list[float],
                horizons: list[int]) -> dict:
    """Everything ``neuralfolio risk`` prints, as a JSON-ready dict."""
    import numpy as np

    from neuralfolio.data import simple_returns
    from neuralfolio.risk import (
        TRADING_DAYS,
        VAR_METHODS,
        annualized_return,
        annualized_volatility,
        conditional_value_at_risk,
        max_drawdown,
        risk_contributions,
        sharpe_ratio,
        sortino_ratio,
        value_at_risk,
    )
    from neuralfolio.risk._var import _min_historical_obs

    asset_returns = simple_returns(prices)
    w = np.asarray(weights, dtype=np.float64)
    r = asset_returns.to_numpy() @ w
    covariance = np.cov(asset_returns.to_numpy(), rowvar=False, ddof=1).reshape(
        len(w), len(w)) * TRADING_DAYS
    contributions = risk_contributions(w, covariance)
    notes = []
    tail = []
    for method in VAR_METHODS:
        for horizon in horizons:
            for confidence in confidences:
                row = {"method": method, "horizon": horizon, "confidence": confidence}
                need = _min_historical_obs(confidence) + horizon - 1
                if method == "historical" and horizon > 1 and len(r) < need:
                    row.update(var=None, cvar=None)
                    notes.append(f"historical {horizon}-day at {confidence:g} needs {need} "
                                 f"daily returns, the data has {len(r)}.")
                else:
                    row["var"] = value_at_risk(r, confidence, horizon, method)
                    row["cvar"] = conditional_value_at_risk(r, confidence, horizon, method)
                tail.append(row)
    return {
        "start": str(prices.index[0].date()),
        "end": str(prices.index[-1].date()),
        "observations": len(r),
        "annualized_return": annualized_return(r),
        "annualized_volatility": annualized_volatility(r),
        "sharpe": sharpe_ratio(r),
        "sortino": sortino_ratio(r),
        "max_drawdown": max_drawdown(r),
        "tail_risk": tail,
        "assets": [
            {"asset": str(a), "weight": float(wi), "risk_contribution": float(ci),
             "risk_share": float(ci / contributions.sum())}
            for a, wi, ci in zip(prices.columns, w, contributions, strict=True)
        ],
        "notes": notes,
    }


def risk(
    source: Annotated[str, typer.Argument(help="Data set name or CSV/Parquet path.")],
    weights: Annotated[str, typer.Option(
        help="Portfolio weights: 'equal', NAME=VALUE pairs (BAC=0.3,JPM=0.7) or one value "
             "per asset in column order; they must sum to 1.")] = "equal",
    start: StartOpt = None,
    end: EndOpt = None,
    assets: AssetsOpt = None,
    drop: DropOpt = None,
    layout: LayoutOpt = "auto",
    max_fill: MaxFillOpt = 5,
    confidences: Annotated[str, typer.Option(
        "--confidence", help="Comma-separated VaR confidence levels.")] = "0.95,0.99",
    horizons: Annotated[str, typer.Option(
        "--horizon", help="Comma-separated horizons in trading days.")] = "1,10",
    json_out: JsonOpt = False,
) -> None:
    """Risk report of a fixed-weight portfolio: volatility, ratios, drawdown, VaR and CVaR.

    Volatility, Sharpe, Sortino, maximum drawdown; VaR and CVaR (positive losses) by the
    historical, normal, Student-t and Monte Carlo methods; each asset's share of the risk.
    The weights are held every day (daily rebalancing).

    Example: neuralfolio risk gfc --weights BAC=0.25,JPM=0.25,GE=0.25,HD=0.25
    """
    import json
    import sys

    from neuralfolio.risk._var import _check_confidence, _check_horizon

    levels = [_check_confidence(c) for c in _parse_numbers(confidences, "--confidence", float)]
    days = [_check_horizon(h) for h in _parse_numbers(horizons, "--horizon", int)]
    prices = load(source, start, end, assets, max_fill, drop, layout)
    w = parse_weights(weights, [str(a) for a in prices.columns])
    report = {"source": source, **risk_report(prices, w, levels, days)}
    if json_out:
        sys.stdout.write(json.dumps(_finite(report), indent=2) + "\n")
        return
    _print_report(report, levels, days)


def _finite(obj):
    """The report with NaN and infinities as None, so the JSON is standard."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None or value != value else format(value, spec)


def _print_report(report: dict, levels: list[float], days: list[int]) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    summary = Table(title=f"{report['source']}: {report['observations']} daily returns, "
                          f"{report['start']} .. {report['end']}")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_row("annualized return", _fmt(report["annualized_return"], ".2%"))
    summary.add_row("annualized volatility", _fmt(report["annualized_volatility"], ".2%"))
    summary.add_row("Sharpe ratio", _fmt(report["sharpe"], ".2f"))
    summary.add_row("Sortino ratio", _fmt(report["sortino"], ".2f"))
    summary.add_row("max drawdown", _fmt(report["max_drawdown"], ".2%"))
    console.print(summary)

    tail = Table(title="VaR / CVaR (loss as a share of portfolio value)")
    tail.add_column("method")
    keys = [(h, c) for h in days for c in levels]
    for h, c in keys:
        tail.add_column(f"{h}d {c:.0%}\nVaR / CVaR", justify="right")
    rows = {(t["method"], t["horizon"], t["confidence"]): t for t in report["tail_risk"]}
    for method in dict.fromkeys(t["method"] for t in report["tail_risk"]):
        cells = []
        for h, c in keys:
            t = rows[(method, h, c)]
            cells.append(f"{_fmt(t['var'], '.2%')} / {_fmt(t['cvar'], '.2%')}")
        tail.add_row(method, *cells)
    console.print(tail)

    contrib = Table(title="Risk contributions (annualized volatility)")
    for col in ("asset", "weight", "contribution", "share of risk"):
        contrib.add_column(col, justify="left" if col == "asset" else "right")
    for a in report["assets"]:
        contrib.add_row(a["asset"], f"{a['weight']:.1%}", f"{a['risk_contribution']:.2%}",
                        f"{a['risk_share']:.1%}")
    console.print(contrib)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
