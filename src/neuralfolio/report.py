"""Static HTML report of a walk-forward backtest, readable at a glance.

:func:`write_report` turns a :class:`~neuralfolio.backtest.BacktestResult` into
``run_dir/report.html``: one self-contained page (inline CSS, figures embedded as base64 PNG,
no script, nothing fetched from the network) with the headline, the statistics per policy,
paired bootstrap comparisons, and figures of wealth, drawdowns, rolling volatility, weights,
distance to the optimizer, trading and re-training. Every figure is also written to
``run_dir/report/NAME.png``. :func:`report_from_run_dir` does the same for a run saved with
:meth:`BacktestResult.save <neuralfolio.backtest.BacktestResult.save>`.

Figures are drawn on :class:`matplotlib.figure.Figure` objects, which need no pyplot and no
backend selection, and are released as soon as they are written.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib import dates as mdates
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter

from neuralfolio.backtest import (
    METRICS,
    STATISTICS,
    BacktestResult,
    Execution,
    deflated_sharpe_ratio,
)
from neuralfolio.errors import ConfigError, DataError

__all__ = ["SECTIONS", "report_from_run_dir", "write_report"]

SECTIONS: dict[str, str] = {
    "summary": "Summary",
    "statistics": "Statistics per policy",
    "paired": "Paired comparisons",
    "cumulative": "Cumulative wealth",
    "drawdowns": "Drawdowns",
    "rolling_volatility": "Rolling volatility",
    "weights": "Weights over time",
    "focus": "Weights through the focus window",
    "l1_gap": "Distance to the optimizer",
    "turnover": "Trading and costs",
    "retraining": "Re-training",
    "config": "Configuration",
}
"""Section ids of the report, in page order, with their headings (``focus`` only when a
focus window is given; its heading names the window)."""

_DPI = 100
_WIDTH = 10.0
_MAX_POINTS = 1500
_VOL_WINDOW = 63
_ROLL = 21
_BLOCK = 21
_FOCUS_DATES = 6
_QUICK_FIT = 0.1
_PERIODS = 252
_MINUS = "\u2212"
_DASH = "\u2013"
_FIGURES = ("cumulative", "drawdowns", "rolling_volatility", "weights", "focus_weights",
            "l1_gap", "turnover", "retraining")

# (column, heading, format, best: "max"/"min"/None)
_COLUMNS: tuple[tuple[str, str, str, str | None], ...] = (
    ("annual_return", "Annual return", ".1%", "max"),
    ("volatility", "Volatility", ".1%", "min"),
    ("sharpe", "Sharpe", ".2f", "max"),
    ("sortino", "Sortino", ".2f", "max"),
    ("max_drawdown", "Max drawdown", ".1%", "min"),
    ("calmar", "Calmar", ".2f", "max"),
    ("var_95", "VaR 95", ".2%", "min"),
    ("cvar_95", "CVaR 95", ".2%", "min"),
    ("worst_day", "Worst day", ".2%", "max"),
    ("turnover", "Turnover", ".2%", None),
    ("cost", "Cost", ".2%", None),
    ("tracking_error", "Tracking error", ".2%", None),
    ("information_ratio", "Info. ratio", ".2f", None),
    ("psr", "PSR", ".2f", "max"),
    ("l1_to_optimizer", "L1 to optimizer", ".3f", None),
    ("update_us", "Update µs", ",.0f", None),
    ("fit_seconds", "Fit s", ",.1f", None),
)

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#eef0f3;color:#1c2230;
 font:14px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1280px;margin:0 auto;padding:22px 30px 60px;background:#fff}
header h1{font-size:25px;margin:0 0 2px}
header p{margin:0;color:#586174}
nav{margin:14px 0 4px;padding:8px 0;border-top:1px solid #e3e6eb;border-bottom:1px solid #e3e6eb;
 font-size:13px}
nav a{color:#1f5fbf;text-decoration:none;margin-right:14px;white-space:nowrap}
section{margin-top:30px}
h2{font-size:19px;margin:0 0 8px;padding-bottom:4px;border-bottom:2px solid #1c2230}
h3{font-size:15px;margin:18px 0 6px}
p{margin:6px 0}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;margin:8px 0 12px}
.facts dt{color:#586174}
.facts dd{margin:0;font-weight:600}
ul.reading{margin:6px 0;padding-left:20px}
ul.reading li{margin:3px 0}
.note{color:#6b4a00;background:#fff6e0;border-left:3px solid #e8a800;padding:5px 10px;margin:6px 0;
 font-size:13px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12px;font-variant-numeric:tabular-nums;margin:6px 0}
th,td{padding:4px 6px;border-bottom:1px solid #e6e9ee;text-align:right;white-space:nowrap}
th{background:#f2f4f7;font-weight:600;vertical-align:bottom;white-space:normal;min-width:3.5em}
th:first-child,td:first-child{text-align:left}
tbody tr:nth-child(even){background:#fafbfc}
td.best{font-weight:700;color:#0b4f9c}
.yes{color:#0b6e2e;font-weight:600}
.no{color:#7a8290}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
figure{margin:10px 0 4px}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#586174;font-size:12.5px;margin-top:2px}
dl.defs{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:12.5px;
 color:#3a4252}
dl.defs dt{font-weight:600}
dl.defs dd{margin:0}
pre{background:#f6f8fa;border:1px solid #e3e6eb;padding:10px;font-size:12px;overflow:auto;
 max-height:520px}
details summary{cursor:pointer;color:#1f5fbf;margin:6px 0}
"""


def write_report(
    result: BacktestResult,
    run_dir: str | Path,
    *,
    title: str | None = None,
    benchmark: str | None = "optimizer_daily",
    baselines: Sequence[str] | str | None = ("optimizer_daily", "equal_weight"),
    network: str | None = "network",
    optimizer: str | None = "optimizer_daily",
    focus: Sequence[Any] | None = None,
    n_boot: int = 2000,
    seed: int | None = 0,
) -> Path:
    """Write a self-contained HTML report of a walk-forward backtest.

    Parameters
    ----------
    result : BacktestResult
        The run to report.
    run_dir : str or Path
        Directory of the run; the page is ``run_dir/report.html`` and the figures
        ``run_dir/report/*.png``.
    title : str, optional
        Heading of the page (default: the data set and test period).
    benchmark : str, optional
        Policy the tracking error and information ratio are measured against; a name that is
        not a policy of the run leaves them out (with a note).
    baselines : sequence of str
        Policies every other one is compared with by paired block bootstrap; those that are
        not policies of the run are skipped.
    network : str, optional
        The main network policy; when it is not a policy of the run, the first policy whose
        name starts with ``"network"`` takes its place (if any).
    optimizer : str, optional
        The optimizer policy the networks are shown next to.
    focus : (start, end, label), optional
        A date window, e.g. ``("2008-08-01", "2008-11-28", "September 2008")``: adds a
        section on the weights of the networks and the optimizer through it.
    n_boot : int
        Bootstrap resamples of the paired comparisons.
    seed : int, optional
        Seed of the bootstrap.

    Returns
    -------
    Path
        ``run_dir/report.html``.

    Raises
    ------
    ConfigError
        The run has no policies, or ``focus`` is malformed or holds no test date.
    """
    policies = result.policies
    if not policies:
        raise ConfigError("The run has no policies; there is nothing to report.")
    dates = result.next_returns.index
    if len(dates) < 2:
        raise DataError(f"The run has {len(dates)} test dates; a report needs at least 2.")
    window = _focus_window(dates, focus)

    notes: list[str] = []
    if benchmark is not None and benchmark not in policies:
        notes.append(f"Benchmark {benchmark!r} is not a policy of this run: tracking error and "
                     "information ratio are left out.")
        benchmark = None
    if isinstance(baselines, str):
        baselines = (baselines,)
    baselines = list(dict.fromkeys(baselines or ()))
    absent = [b for b in baselines if b not in policies]
    if absent:
        notes.append(f"Baseline(s) {', '.join(map(repr, absent))} not in this run: no paired "
                     "comparison against them.")
    baselines = [b for b in baselines if b in policies]
    net = _pick_network(policies, network)
    if network is not None and net != network:
        notes.append(f"Network {network!r} is not a policy of this run"
                     + (f"; showing {net!r} instead." if net else "; no network is shown."))
    networks = [net] if net else []
    networks += [p for p in policies if p.startswith("network") and p not in networks]
    if optimizer is not None and optimizer not in policies:
        notes.append(f"Optimizer {optimizer!r} is not a policy of this run.")
        optimizer = None

    run_dir = Path(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name in _FIGURES:
        (out / f"{name}.png").unlink(missing_ok=True)

    rep = _Report(result=result, out=out, benchmark=benchmark, baselines=baselines,
                  net=net, networks=networks, optimizer=optimizer, notes=notes)
    rep.compute(n_boot=n_boot, seed=seed)

    sections = [
        ("summary", SECTIONS["summary"], rep.summary_section()),
        ("statistics", SECTIONS["statistics"], rep.statistics_section()),
        ("paired", SECTIONS["paired"], rep.paired_section(n_boot)),
        ("cumulative", SECTIONS["cumulative"], rep.cumulative_section()),
        ("drawdowns", SECTIONS["drawdowns"], rep.drawdown_section()),
        ("rolling_volatility", SECTIONS["rolling_volatility"], rep.volatility_section()),
        ("weights", SECTIONS["weights"], rep.weights_section()),
    ]
    if window is not None:
        sections.append(("focus", f"Weights through {window[2]}", rep.focus_section(*window)))
    sections += [
        ("l1_gap", SECTIONS["l1_gap"], rep.l1_section()),
        ("turnover", SECTIONS["turnover"], rep.turnover_section()),
        ("retraining", SECTIONS["retraining"], rep.retraining_section()),
        ("config", SECTIONS["config"], rep.config_section()),
    ]
    if title is None:
        data = result.config.get("data") if isinstance(result.config, dict) else None
        title = "Walk-forward backtest" + (f" on {data}" if data else "")
        title += f", {dates[0]:%Y-%m-%d} to {dates[-1]:%Y-%m-%d}"
    path = run_dir / "report.html"
    path.write_text(_page(title, rep.subtitle(), sections), encoding="utf-8")
    return path


def report_from_run_dir(run_dir: str | Path, **kwargs: Any) -> Path:
    """Write the report of a run saved with :meth:`BacktestResult.save`.

    The benchmark and baselines come from the run's config (keys ``benchmark`` and
    ``baselines``) and the focus window from its key ``report_focus`` (``[start, end,
    label]``), unless given in ``kwargs``.

    Parameters
    ----------
    run_dir : str or Path
        Directory of the saved run; the report is written into it.
    **kwargs
        Keyword arguments of :func:`write_report`.

    Returns
    -------
    Path
        ``run_dir/report.html``.

    Raises
    ------
    DataError
        ``run_dir`` is not a saved run.
    ConfigError
        ``report_focus`` is not three strings, or the window holds no test date.
    """
    result = BacktestResult.load(run_dir)
    config = result.config if isinstance(result.config, dict) else {}
    if "benchmark" in config:
        kwargs.setdefault("benchmark", config["benchmark"])
    if config.get("baselines") is not None:
        kwargs.setdefault("baselines", tuple(config["baselines"]))
    focus = config.get("report_focus")
    if focus is not None and "focus" not in kwargs:
        if not isinstance(focus, list | tuple) or len(focus) != 3:
            raise ConfigError(f"report_focus in the run config is [start, end, label], e.g. "
                              f"['2008-08-01', '2008-11-28', 'September 2008']; got {focus!r}.")
        kwargs["focus"] = tuple(str(x) for x in focus)
    return write_report(result, run_dir, **kwargs)


# --------------------------------------------------------------------------------------------
# Helpers


def _e(text: Any) -> str:
    return html.escape(str(text))


def _fmt(x: Any, spec: str, signed: bool = False) -> str:
    """``x`` formatted with ``spec`` (a true minus sign; a dash for missing values)."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return _DASH
    if not math.isfinite(value):
        return _DASH
    return format(value, ("+" if signed else "") + spec).replace("-", _MINUS)


def _pick_network(policies: list[str], network: str | None) -> str | None:
    if network is not None and network in policies:
        return network
    return next((p for p in policies if p.startswith("network")), None)


def _focus_window(dates: pd.DatetimeIndex, focus: Sequence[Any] | None):
    """``(start, end, label, mask)`` of a focus window, validated; None without one."""
    if focus is None:
        return None
    example = "e.g. ('2008-08-01', '2008-11-28', 'September 2008')"
    if isinstance(focus, str) or len(focus) != 3:
        raise ConfigError(f"focus is (start, end, label), {example}; got {focus!r}.")
    start, end, label = focus
    try:
        t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    except (TypeError, ValueError):
        raise ConfigError(f"focus start and end must be dates, {example}; got {start!r} and "
                          f"{end!r}.") from None
    if pd.isna(t0) or pd.isna(t1):
        raise ConfigError(f"focus start and end must be dates, {example}; got {start!r} and "
                          f"{end!r}.")
    if dates.tz is not None:
        t0 = t0.tz_localize(dates.tz) if t0.tz is None else t0
        t1 = t1.tz_localize(dates.tz) if t1.tz is None else t1
    if t1 < t0:
        raise ConfigError(f"The focus window {label!r} ends ({t1:%Y-%m-%d}) before it starts "
                          f"({t0:%Y-%m-%d}); give (start, end, label).")
    mask = np.asarray((dates >= t0) & (dates <= t1))
    if not mask.any():
        raise ConfigError(
            f"The focus window {label!r} ({t0:%Y-%m-%d} to {t1:%Y-%m-%d}) contains no test "
            f"date; this run's test period runs from {dates[0]:%Y-%m-%d} to "
            f"{dates[-1]:%Y-%m-%d}. Choose a window inside it.")
    return t0, t1, str(label), mask


def _palette(n: int) -> list[str]:
    if n <= 10:
        cmap = colormaps["tab10"]
        return [to_hex(cmap(i)) for i in range(n)]
    if n <= 20:
        cmap = colormaps["tab20"]
        return [to_hex(cmap(i)) for i in range(n)]
    cmap = colormaps["turbo"]
    return [to_hex(cmap(x)) for x in np.linspace(0.05, 0.95, n)]


def _label(text: Any) -> str:
    """Text safe as a matplotlib label (no mathtext, not hidden by a leading underscore)."""
    s = str(text).replace("$", r"\$")
    return " " + s if s.startswith("_") else s


def _thin(obj):
    """Every k-th row so that at most :data:`_MAX_POINTS` are drawn (the last one kept)."""
    n = len(obj)
    if n <= _MAX_POINTS:
        return obj
    step = math.ceil(n / _MAX_POINTS)
    idx = np.unique(np.append(np.arange(0, n, step), n - 1))
    return obj.iloc[idx]


def _date_axis(ax) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    fig.clear()
    return buf.getvalue()


def _swatch(color: str) -> str:
    return f'<span class="sw" style="background:{_e(color)}"></span>'


def _table(head: list[str], rows: list[list[str]], *, raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are HTML already)."""
    cell = (lambda c: c) if raw else _e
    th = "".join(f"<th>{cell(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody>' \
           "</table></div>"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    nav = "\n".join(f'<a href="#{sid}">{_e(head)}</a>' for sid, head, _ in sections)
    body = "\n".join(f'<section id="{sid}">\n<h2>{_e(head)}</h2>\n{content}\n</section>'
                     for sid, head, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<header><h1>{_e(title)}</h1><p>{_e(subtitle)}</p></header>\n"
        f"<nav>{nav}</nav>\n{body}\n</main>\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------------------------
# The report


@dataclass
class _Report:
    result: BacktestResult
    out: Path
    benchmark: str | None
    baselines: list[str]
    net: str | None
    networks: list[str]
    optimizer: str | None
    notes: list[str]
    colors: dict[str, str] = field(default_factory=dict)
    asset_colors: dict[str, str] = field(default_factory=dict)
    table: pd.DataFrame | None = None
    paired: dict[str, pd.DataFrame] = field(default_factory=dict)
    returns: pd.DataFrame | None = None

    # ---------------------------------------------------------------- data

    @property
    def policies(self) -> list[str]:
        return self.result.policies

    @property
    def dates(self) -> pd.DatetimeIndex:
        return self.result.next_returns.index

    def execution(self, name: str) -> Execution:
        return self.result.execution.get(name) or Execution()

    def compute(self, *, n_boot: int, seed: int | None) -> None:
        res = self.result
        self.colors = dict(zip(self.policies, _palette(len(self.policies)), strict=True))
        assets = [str(c) for c in res.next_returns.columns]
        self.asset_colors = dict(zip(assets, _palette(len(assets)), strict=True))
        summary = res.summary()
        stats = res.statistics(self.benchmark)
        self.table = summary.join(stats.drop(columns=[c for c in stats if c in summary]))
        self.returns = res.portfolio_returns()
        block = min(_BLOCK, len(self.dates))
        self.paired = {b: res.paired(b, ("volatility", "sharpe"), n_boot=n_boot, block=block,
                                     seed=seed) for b in self.baselines}

    def wealth(self, name: str) -> pd.Series:
        """Wealth after each date over the initial wealth."""
        return self.result.simulation(name).wealth / self.execution(name).initial_wealth

    def retrain_marks(self, ax, dates: Sequence[pd.Timestamp] | None = None, *,
                      strong: bool = False) -> None:
        marks = list(self.result.retrain_dates if dates is None else dates)
        if not marks:
            return
        x = pd.DatetimeIndex(marks).to_numpy()
        if strong:
            ax.vlines(x, 0, 1, transform=ax.get_xaxis_transform(), colors="0.15", lw=1.0,
                      linestyles="--", zorder=3)
        else:
            ax.vlines(x, 0, 1, transform=ax.get_xaxis_transform(), colors="0.55", lw=0.6,
                      alpha=0.35, zorder=0)

    def figure(self, fig: Figure, name: str, alt: str, caption: str) -> str:
        data = _png(fig)
        (self.out / f"{name}.png").write_bytes(data)
        src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return (f'<figure><img src="{src}" alt="{_e(alt)}">'
                f"<figcaption>{_e(caption)} (also report/{_e(name)}.png)</figcaption></figure>")

    def policy_cell(self, name: str) -> str:
        return _swatch(self.colors[name]) + _e(name)

    def subtitle(self) -> str:
        d = self.dates
        return (f"{len(self.policies)} policies, {len(d):,} decision dates from "
                f"{d[0]:%Y-%m-%d} to {d[-1]:%Y-%m-%d}, {len(self.result.retrain_dates)} "
                "re-trainings. Returns are net of costs.")

    # ---------------------------------------------------------------- sections

    def summary_section(self) -> str:
        res, t, d = self.result, self.table, self.dates
        cfg = res.config if isinstance(res.config, dict) else {}
        every = cfg.get("retrain_every")
        schedule = ""
        if every is not None:
            schedule = (f", every {every} test dates" if str(every).lstrip("-").isdigit()
                        else f", {every}")
        lead = self.net or self.policies[0]
        ex_text = f"{self.execution_text(lead)} ({lead})"
        if any(self.execution(p) != self.execution(lead) for p in self.policies):
            ex_text += "; it differs between policies, see Configuration"
        facts = [
            ("Test period", f"{d[0]:%Y-%m-%d} to {d[-1]:%Y-%m-%d}: {len(d):,} decision dates "
                            f"({len(d) / _PERIODS:.1f} years)"),
            ("Policies", f"{len(self.policies)}: {', '.join(self.policies)}"),
            ("Re-trainings", f"{len(res.retrain_dates)}{schedule}"),
            ("Execution", ex_text),
        ]
        if self.benchmark:
            facts.append(("Benchmark", self.benchmark))
        dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
        reading = [f"<li>{_e(s)}</li>" for s in self.reading(t)]
        notes = "".join(_note(n) for n in self.notes)
        return (f'<dl class="facts">{dl}</dl><h3>Reading</h3>'
                f'<ul class="reading">{"".join(reading)}</ul>{notes}')

    def execution_text(self, name: str) -> str:
        ex = self.result.execution.get(name)
        if ex is None:
            return "daily rebalancing, no costs (default execution)"
        text = f"{ex.rebalance} rebalancing"
        if ex.rebalance == "threshold":
            text += f" (drift above {ex.threshold:g})"
        text += f", {ex.cost_bps:g} bps cost on the amount traded"
        if ex.fixed_cost:
            text += f", {ex.fixed_cost:g} per order"
        if ex.cash_rate:
            text += f", cash at {ex.cash_rate:.2%} a year"
        return text

    def reading(self, t: pd.DataFrame) -> list[str]:
        out = []
        vol = t["volatility"].astype(float)
        if vol.notna().any():
            low, high = vol.idxmin(), vol.idxmax()
            out.append(f"Lowest volatility: {low}, {vol[low]:.1%} a year (highest: {high}, "
                       f"{vol[high]:.1%}).")
        sharpe = t["sharpe"].astype(float)
        if sharpe.notna().any():
            best = sharpe.idxmax()
            ret = t["annual_return"].astype(float)
            out.append(f"Best Sharpe ratio: {best}, {sharpe[best]:.2f} "
                       f"({ret[best]:.1%} a year); best annual return: {ret.idxmax()}, "
                       f"{ret.max():.1%}.")
        dd = t["max_drawdown"].astype(float)
        if dd.notna().any():
            out.append(f"Deepest drawdown: {dd.idxmax()}, {dd.max():.1%} below its peak; "
                       f"shallowest: {dd.idxmin()}, {dd.min():.1%}.")
        net, opt = self.net, self.optimizer
        if net and opt and net != opt:
            diff = (vol[net] - vol[opt]) * 100
            text = (f"The network ({net}) ran at {vol[net]:.2%} volatility against "
                    f"{vol[opt]:.2%} for the optimizer ({opt}), {_fmt(diff, '.2f', True)} pts")
            if opt in self.paired and (net, "volatility") in self.paired[opt].index:
                row = self.paired[opt].loc[(net, "volatility")]
                sig = row["low"] > 0 or row["high"] < 0
                text += (f" (95% interval {_fmt(row['low'] * 100, '.2f', True)} to "
                         f"{_fmt(row['high'] * 100, '.2f', True)} pts: "
                         + ("a significant difference)" if sig else "not significant)"))
            text += (f"; its weights were on average an L1 distance of "
                     f"{t.loc[net, 'l1_to_optimizer']:.3f} from the daily optimizer's (0: the "
                     "same weights, 2: no asset in common for long-only portfolios).")
            out.append(text)
        elif net:
            out.append(f"The network ({net}) ran at {vol[net]:.2%} volatility; its weights were "
                       f"on average an L1 distance of {t.loc[net, 'l1_to_optimizer']:.3f} from "
                       "the daily optimizer's.")
        return out

    def statistics_section(self) -> str:
        t = self.table
        cols = [c for c in _COLUMNS if c[0] in t.columns]
        heads = [f'<th title="{_e(self.definition(key))}">{_e(head)}</th>'
                 for key, head, _, _ in cols]
        best = {}
        for key, _, _, rule in cols:
            values = t[key].astype(float)
            if rule and values.notna().sum() > 1:
                best[key] = values.idxmax() if rule == "max" else values.idxmin()
        rows = []
        for name in t.index:
            cells = [f"<td>{self.policy_cell(name)}</td>"]
            for key, _, spec, _ in cols:
                cls = ' class="best"' if best.get(key) == name else ""
                cells.append(f"<td{cls}>{_e(_fmt(t.loc[name, key], spec))}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        table = (f'<div class="scroll"><table><thead><tr><th>Policy</th>{"".join(heads)}</tr>'
                 f'</thead><tbody>{"".join(rows)}</tbody></table></div>')
        defs = "".join(f"<dt>{_e(head)}</dt><dd>{_e(self.definition(key))}</dd>"
                       for key, head, _, _ in cols)
        intro = ("<p>From the net daily returns of every policy over the test period; bold "
                 "marks the best value of a column where better is clear. Hover a heading for "
                 "its definition.</p>")
        if self.benchmark:
            note = (f"<p>Tracking error and information ratio are measured against "
                    f"{_e(self.benchmark)}.</p>")
        else:
            note = _note("No benchmark: tracking error and information ratio are not computed.")
        return f'{intro}{table}{note}<h3>Definitions</h3><dl class="defs">{defs}</dl>'

    def definition(self, key: str) -> str:
        text = METRICS.get(key) or STATISTICS.get(key, "")
        if key in ("tracking_error", "information_ratio") and self.benchmark:
            text += f" ({self.benchmark})"
        if key in ("var_95", "cvar_95"):
            text += "; a daily figure"
        return text

    def paired_section(self, n_boot: int) -> str:
        parts = [f"<p>Differences are policy minus baseline on the same days, with 95% "
                 f"moving-block bootstrap intervals ({n_boot:,} resamples of "
                 f"{min(_BLOCK, len(self.dates))}-day blocks). Volatility differences are in "
                 "percentage points a year; an interval that excludes 0 marks a difference the "
                 "bootstrap finds significant.</p>"]
        if not self.paired:
            parts.append(_note("No baseline of this run to compare with."))
        for base, frame in self.paired.items():
            rows = []
            for name in self.policies:
                if name == base:
                    continue
                row = [self.policy_cell(name)]
                for stat, scale, unit in (("volatility", 100.0, " pts"), ("sharpe", 1.0, "")):
                    if (name, stat) not in frame.index:
                        row += [_DASH, _DASH]
                        continue
                    est, lo, hi = (frame.loc[(name, stat), k] * scale
                                   for k in ("estimate", "low", "high"))
                    row.append(_e(f"{_fmt(est, '.2f', True)}{unit} "
                                  f"[{_fmt(lo, '.2f', True)}, {_fmt(hi, '.2f', True)}]"))
                    if lo > 0 or hi < 0:
                        row.append(f'<span class="yes">yes, {"higher" if lo > 0 else "lower"}'
                                   "</span>")
                    else:
                        row.append('<span class="no">no</span>')
                rows.append(row)
            parts.append(f"<h3>Against {_e(base)}</h3>")
            parts.append(_table(["Policy", "Volatility difference [95%]", "Excludes 0",
                                 "Sharpe difference [95%]", "Excludes 0"], rows, raw=True))
        parts.append("<h3>Deflated Sharpe ratio</h3>")
        parts += [f"<p>{_e(s)}</p>" for s in self.deflated()]
        return "".join(parts)

    def deflated(self) -> list[str]:
        r = self.returns
        sd = r.std(ddof=1)
        daily = (r.mean() / sd.where(sd > 0)).astype(float)
        groups = [("all", list(self.policies))]
        if len(self.networks) >= 2:
            groups.append(("networks", list(self.networks)))
        out = []
        for kind, names in groups:
            trials = daily[names].dropna()
            if len(trials) < 2:
                out.append(f"Not enough policies with a Sharpe ratio ({kind}) for a deflated "
                           "Sharpe ratio.")
                continue
            best = trials.idxmax()
            try:
                dsr = deflated_sharpe_ratio(r[best].to_numpy(), trials.to_numpy())
            except (DataError, ValueError, FloatingPointError) as exc:
                out.append(f"Deflated Sharpe ratio not available ({kind}): {exc}")
                continue
            what = "policies" if kind == "all" else "network policies"
            out.append(
                f"Picking the best Sharpe ratio among the {len(trials)} {what} ({best}, "
                f"{trials[best] * math.sqrt(_PERIODS):.2f} a year) and deflating it for that "
                f"many trials leaves a probability of {dsr:.2f} that its true Sharpe ratio "
                "exceeds 0 (0.95 is the usual bar).")
        return out

    def cumulative_section(self) -> str:
        fig = Figure(figsize=(_WIDTH, 4.4), layout="constrained")
        ax = fig.subplots()
        lo, hi = np.inf, -np.inf
        for name in self.policies:
            w = self.wealth(name)
            lo, hi = min(lo, float(w.min())), max(hi, float(w.max()))
            s = _thin(w)
            ax.plot(s.index.to_numpy(), s.to_numpy(), color=self.colors[name], lw=1.3,
                    label=_label(f"{name} (×{w.iloc[-1]:.2f})"))
        log = lo > 0 and hi / lo > 4
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.axhline(1.0, color="0.6", lw=0.6)
        self.retrain_marks(ax)
        _date_axis(ax)
        ax.set_ylabel("wealth (start = 1)" + (", log scale" if log else ""))
        ax.grid(alpha=0.25)
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
        return self.figure(fig, "cumulative", "Cumulative wealth per policy",
                           "Wealth net of costs, starting at 1 (final multiple in the legend); "
                           "faint vertical lines mark re-training dates.")

    def drawdown_section(self) -> str:
        fig = Figure(figsize=(_WIDTH, 3.6), layout="constrained")
        ax = fig.subplots()
        for name in self.policies:
            w = self.wealth(name)
            peak = np.maximum.accumulate(np.maximum(w.to_numpy(), 1.0))
            dd = _thin(pd.Series(w.to_numpy() / peak - 1.0, index=w.index))
            ax.plot(dd.index.to_numpy(), dd.to_numpy(), color=self.colors[name], lw=1.1,
                    label=_label(f"{name} (max {_fmt(-(w.to_numpy() / peak - 1).min(), '.1%')}"
                                 ")"))
        self.retrain_marks(ax)
        _date_axis(ax)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylabel("below previous peak")
        ax.grid(alpha=0.25)
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
        return self.figure(fig, "drawdowns", "Drawdown curves per policy",
                           "Loss from the previous peak of wealth (net of costs).")

    def volatility_section(self) -> str:
        win = min(_VOL_WINDOW, len(self.dates))
        fig = Figure(figsize=(_WIDTH, 3.6), layout="constrained")
        ax = fig.subplots()
        for name in self.policies:
            vol = self.returns[name].rolling(win).std() * math.sqrt(_PERIODS)
            s = _thin(vol)
            ax.plot(s.index.to_numpy(), s.to_numpy(), color=self.colors[name], lw=1.1,
                    label=_label(name))
        self.retrain_marks(ax)
        _date_axis(ax)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylabel(f"{win}-day volatility, annualized")
        ax.grid(alpha=0.25)
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
        return self.figure(fig, "rolling_volatility", "Rolling volatility per policy",
                           f"Annualized volatility of net daily returns over the last {win} "
                           "dates.")

    def weights_panels(self) -> list[str]:
        panels = []
        if self.net:
            panels.append(self.net)
        if self.optimizer and self.optimizer not in panels:
            panels.append(self.optimizer)
        panels += [n for n in self.networks if n not in panels]
        return panels

    def weights_figure(self, names: list[str], mask: np.ndarray | None = None,
                       marks: Sequence[pd.Timestamp] | None = None) -> Figure:
        ncols = 1 if len(names) == 1 else 2
        nrows = math.ceil(len(names) / ncols)
        fig = Figure(figsize=(_WIDTH, 0.9 + 2.7 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
        short = False
        for ax, name in zip(axes, names, strict=False):
            w = self.result.weights[name]
            if mask is not None:
                w = w.loc[mask]
            short |= self.stack(ax, w)
            ax.set_title(_label(name), fontsize=10, color=self.colors[name], loc="left")
            if mask is None:
                self.retrain_marks(ax)
            else:
                self.retrain_marks(ax, marks, strong=True)
            _date_axis(ax)
            ax.tick_params(labelbottom=True, labelsize=8)
            ax.grid(alpha=0.2)
        for ax in axes[:len(names):ncols]:
            ax.set_ylabel("weight")
        for ax in axes[len(names):]:
            ax.set_visible(False)
        handles = [Patch(color=c, label=_label(a)) for a, c in self.asset_colors.items()]
        if short:
            handles.append(Line2D([], [], color="k", lw=0.9, label="net exposure"))
        if mask is not None and marks:
            handles.append(Line2D([], [], color="0.15", lw=1.0, ls="--", label="re-training"))
        if len(self.asset_colors) <= 40:
            rows = math.ceil(len(handles) / 10)
            fig.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False,
                       ncol=math.ceil(len(handles) / rows))
        return fig

    def stack(self, ax, w: pd.DataFrame) -> bool:
        """Stacked areas of the long and the short parts of ``w``; True if any is short."""
        w = _thin(w)
        x = w.index.to_numpy()
        values = w.to_numpy(dtype=np.float64)
        colors = [self.asset_colors[str(c)] for c in w.columns]
        ax.stackplot(x, np.clip(values, 0.0, None).T, colors=colors, lw=0)
        short = bool((values < 0).any())
        if short:
            ax.stackplot(x, np.clip(values, None, 0.0).T, colors=colors, lw=0)
            ax.plot(x, values.sum(axis=1), color="k", lw=0.9)
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlim(x[0], x[-1])
        return short

    def weights_section(self) -> str:
        names = self.weights_panels()
        if not names:
            names = self.policies[:2]
            intro = _note("No network or optimizer in this run; showing the first policies.")
        else:
            intro = ""
        fig = self.weights_figure(names)
        long_short = ("Long and short parts are stacked separately above and below 0, the "
                      "black line is the net exposure. ")
        return intro + self.figure(
            fig, "weights", "Target weights over time per asset",
            "Target weights decided at each date, one colour per asset in every panel (same "
            "axes). " + long_short + "Faint vertical lines mark re-training dates.")

    def focus_section(self, t0, t1, label: str, mask: np.ndarray) -> str:
        names = self.weights_panels() or self.policies[: min(4, len(self.policies))]
        dates = self.dates[mask]
        marks = [d for d in self.result.retrain_dates if t0 <= d <= t1]
        fig = self.weights_figure(names, mask, marks)
        parts = [f"<p>{len(dates)} decision dates from {dates[0]:%Y-%m-%d} to "
                 f"{dates[-1]:%Y-%m-%d}; {len(marks)} re-training(s) in the window"
                 + (f" ({', '.join(f'{d:%Y-%m-%d}' for d in marks)})" if marks else "")
                 + ".</p>"]
        parts.append(self.figure(
            fig, "focus_weights", f"Weights through {label}",
            f"Target weights through {label}; dashed lines mark re-training dates. Long and "
            "short parts are stacked separately above and below 0."))
        # How each policy did over the window.
        rows = []
        ref = self.result.reference.to_numpy()[mask]
        for name in self.policies:
            r = self.returns[name].to_numpy()[mask]
            wealth = np.cumprod(1.0 + r)
            dd = 1.0 - (wealth / np.maximum.accumulate(np.maximum(wealth, 1.0))).min()
            vol = r.std(ddof=1) * math.sqrt(_PERIODS) if len(r) > 1 else math.nan
            l1 = np.abs(self.result.weights[name].to_numpy()[mask] - ref).sum(axis=1).mean()
            rows.append([self.policy_cell(name), _e(_fmt(wealth[-1] - 1.0, ".1%", True)),
                         _e(_fmt(vol, ".1%")), _e(_fmt(dd, ".1%")), _e(_fmt(l1, ".3f"))])
        parts.append("<h3>Policies over the window</h3>")
        parts.append(_table(["Policy", "Return", "Volatility (annualized)", "Max drawdown",
                             "Mean L1 to optimizer"], rows, raw=True))
        # Weights on a few dates.
        k = len(dates)
        picks = np.unique(np.linspace(0, k - 1, min(_FOCUS_DATES, k)).round().astype(int))
        names = [n for n in (self.net, self.optimizer) if n] or names[:2]
        head1 = '<th rowspan="2">Asset</th>' + "".join(
            f'<th colspan="{len(names)}" style="text-align:center">{dates[i]:%Y-%m-%d}</th>'
            for i in picks)
        head2 = "".join(f"<th>{_e(n)}</th>" for _ in picks for n in names)
        frames = {n: self.result.weights[n].loc[mask] for n in names}
        body = []
        for j, asset in enumerate(self.result.next_returns.columns):
            cells = [f"<td>{_swatch(self.asset_colors[str(asset)])}{_e(asset)}</td>"]
            cells += [f"<td>{_e(_fmt(frames[n].iloc[i, j], '.1%'))}</td>"
                      for i in picks for n in names]
            body.append("<tr>" + "".join(cells) + "</tr>")
        total = ["<td><b>Net</b></td>"] + [
            f"<td><b>{_e(_fmt(frames[n].iloc[i].sum(), '.1%'))}</b></td>"
            for i in picks for n in names]
        body.append("<tr>" + "".join(total) + "</tr>")
        parts.append(f"<h3>Weights on {len(picks)} dates of the window: "
                     f"{_e(' vs '.join(names))}</h3>")
        parts.append(f'<div class="scroll"><table><thead><tr>{head1}</tr><tr>{head2}</tr>'
                     f'</thead><tbody>{"".join(body)}</tbody></table></div>')
        return "".join(parts)

    def l1_section(self) -> str:
        names = list(self.networks)
        if "optimizer_at_retrain" in self.policies and "optimizer_at_retrain" not in names:
            names.append("optimizer_at_retrain")
        if not names:
            return _note("No network policy in this run: nothing to compare with the "
                         "optimizer's weights.")
        ref = self.result.reference.to_numpy(dtype=np.float64)
        fig = Figure(figsize=(_WIDTH, 3.8), layout="constrained")
        ax = fig.subplots()
        for name in names:
            gap = pd.Series(np.abs(self.result.weights[name].to_numpy(dtype=np.float64) - ref)
                            .sum(axis=1), index=self.dates)
            raw, smooth = _thin(gap), _thin(gap.rolling(_ROLL, min_periods=1).mean())
            ax.plot(raw.index.to_numpy(), raw.to_numpy(), color=self.colors[name], lw=0.6,
                    alpha=0.25)
            ax.plot(smooth.index.to_numpy(), smooth.to_numpy(), color=self.colors[name],
                    lw=1.5, label=_label(f"{name} (mean {gap.mean():.3f})"))
        self.retrain_marks(ax)
        _date_axis(ax)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("L1 distance to the optimizer")
        ax.grid(alpha=0.25)
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
        return self.figure(
            fig, "l1_gap", "L1 distance of the network weights to the optimizer's",
            "Sum over assets of |w - w*|, the daily optimizer's weights w*: faint, each date; "
            f"bold, {_ROLL}-date rolling mean. Vertical lines mark re-training dates.")

    def turnover_section(self) -> str:
        fig = Figure(figsize=(_WIDTH, 5.6), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True)
        rows = []
        for name in self.policies:
            sim = self.result.simulation(name)
            w0 = self.execution(name).initial_wealth
            traded = sim.traded.astype(float).copy()
            traded.iloc[0] = np.nan  # the first trade, out of cash
            roll = _thin(traded.rolling(_ROLL, min_periods=1).mean())
            before = pd.Series(np.concatenate([[w0], sim.wealth.to_numpy()[:-1]]),
                               index=sim.wealth.index)
            cum = (sim.costs / before).cumsum()
            thin = _thin(cum)
            top.plot(roll.index.to_numpy(), roll.to_numpy(), color=self.colors[name], lw=1.1,
                     label=_label(name))
            bottom.plot(thin.index.to_numpy(), thin.to_numpy(), color=self.colors[name],
                        lw=1.3)
            rows.append([self.policy_cell(name), _e(f"{int(sim.rebalanced.sum()):,}"),
                         _e(_fmt(sim.turnover(), ".2%")),
                         _e(_fmt(sim.turnover() * _PERIODS, ".1f") + "×"),
                         _e(_fmt(cum.iloc[-1], ".2%"))])
        top.yaxis.set_major_formatter(PercentFormatter(1.0))
        top.set_ylabel(f"traded, {_ROLL}-date mean")
        bottom.yaxis.set_major_formatter(PercentFormatter(1.0))
        bottom.set_ylabel("cumulative cost")
        for ax in (top, bottom):
            self.retrain_marks(ax)
            _date_axis(ax)
            ax.grid(alpha=0.25)
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
        figure = self.figure(
            fig, "turnover", "Traded fraction and cumulative cost per policy",
            f"Top: amount traded per date as a fraction of wealth, {_ROLL}-date rolling mean "
            "(the first trade, out of cash, left out). Bottom: costs paid, summed as fractions "
            "of the wealth at each trade.")
        table = _table(["Policy", "Rebalances", "Traded per date", "Traded per year (× wealth)",
                        "Total cost"], rows, raw=True)
        return figure + table

    def retraining_section(self) -> str:
        res = self.result
        marks = list(res.retrain_dates)
        if not marks:
            return _note("No re-training recorded in this run.")
        k = len(marks)
        aligned = [n for n in self.policies if len(res.fit_seconds.get(n, [])) == k]
        odd = [n for n in self.policies if n not in aligned]
        quick = [n for n in aligned
                 if n not in self.networks and np.sum(res.fit_seconds[n]) < _QUICK_FIT]
        aligned = [n for n in aligned if n not in quick]
        parts = [f"<p>{k} (re-)trainings, the first at the start of the test period.</p>"]
        fitted = [n for n in self.networks if n in aligned]
        if fitted:
            fig = Figure(figsize=(_WIDTH, 3.2), layout="constrained")
            ax = fig.subplots()
            width = 0.8 / len(fitted)
            x = np.arange(k)
            for i, name in enumerate(fitted):
                ax.bar(x + (i - (len(fitted) - 1) / 2) * width, res.fit_seconds[name],
                       width=width, color=self.colors[name], label=_label(name))
            step = max(1, math.ceil(k / 8))
            ax.set_xticks(x[::step], [f"{d:%Y-%m-%d}" for d in marks[::step]], fontsize=8)
            ax.set_ylabel("fit seconds")
            ax.grid(axis="y", alpha=0.25)
            fig.legend(loc="outside right upper", fontsize=8, frameon=False)
            parts.append(self.figure(fig, "retraining", "Fit seconds per re-training",
                                     "Seconds each network spent on each (re-)training."))
        rows = [[str(i + 1), f"{d:%Y-%m-%d}",
                 *(_fmt(res.fit_seconds[n][i], ",.2f") for n in aligned)]
                for i, d in enumerate(marks)]
        rows.append(["", "Total", *(_fmt(np.sum(res.fit_seconds[n]), ",.2f") for n in aligned)])
        table = _table(["#", "Re-training date", *(f"{n} (s)" for n in aligned)], rows)
        if k > 24:
            table = f"<details><summary>Table of the {k} re-trainings</summary>{table}</details>"
        parts.append(table)
        if quick:
            parts.append(f"<p>{_e(', '.join(quick))}: under {_QUICK_FIT:g} s of fitting in "
                         "all, left out of the table.</p>")
        if odd:
            parts.append(_note(f"Fit times of {', '.join(odd)} do not line up with the "
                               "re-training dates; left out of the table."))
        return "".join(parts)

    def config_section(self) -> str:
        cfg = self.result.config
        text = json.dumps(cfg, indent=2, default=str) if cfg else "(this run has no config)"
        default = Execution().to_dict()
        keys = list(default)
        rows = []
        for name in self.policies:
            ex = self.result.execution.get(name)
            values = ex.to_dict() if ex is not None else default
            rows.append([self.policy_cell(name)] + [_e(values[k]) for k in keys]
                        + [_e("set" if ex is not None else "default")])
        return ("<h3>Execution per policy</h3>"
                + _table(["Policy", *keys, "source"], rows, raw=True)
                + f"<h3>Run config</h3><pre>{_e(text)}</pre>")
