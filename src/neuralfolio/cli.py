"""The ``neuralfolio`` command line: a thin layer over the library."""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from neuralfolio._cli_common import (
    AssetsOpt,
    DropOpt,
    EndOpt,
    JsonOpt,
    LayoutOpt,
    MaxFillOpt,
    StartOpt,
    load,
    names,
    print_json,
)
from neuralfolio.config import POLICY_NAMES, RunConfig, cache_dir, run_defaults
from neuralfolio.errors import ConfigError, NeuralfolioError, NeuralfolioWarning

app = typer.Typer(
    name="neuralfolio",
    help="Neural-network portfolio allocation: data, labels, training, prediction, backtests, "
         "reports, a weights service, and the course's networks in NumPy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[train]" is a word, not markup
)
data_app = typer.Typer(help="Bundled data sets and price files.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(data_app, name="data")

# Tables stay readable when output goes to a file or a pipe (rich would assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

WindowOpt = Annotated[int, typer.Option(help="Returns per covariance window.")]


# ----------------------------------------------------------------------------- data
@data_app.command("list")
def data_list(json_out: JsonOpt = False) -> None:
    """List the bundled data sets.

    Example: neuralfolio data list
    """
    from neuralfolio.data import list_datasets

    rows = []
    for d in list_datasets():
        p = d.load()
        rows.append({"name": d.name, "assets": p.shape[1], "start": str(p.index[0].date()),
                     "end": str(p.index[-1].date()), "dates": p.shape[0],
                     "description": d.description})
    if json_out:
        print_json(rows)
        return
    table = Table(title="Bundled data sets (offline)")
    for col in ("name", "assets", "start", "end", "dates", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("name", "assets", "start", "end", "dates",
                                            "description")))
    console.print(table)


@data_app.command("show")
def data_show(
    source: Annotated[str, typer.Argument(help="Data set name or CSV/Parquet path.")],
    start: StartOpt = None,
    end: EndOpt = None,
    assets: AssetsOpt = None,
    drop: DropOpt = None,
    layout: LayoutOpt = "auto",
    max_fill: MaxFillOpt = 5,
    out: Annotated[Path | None, typer.Option(
        help="Also write the validated panel to this .csv or .parquet file.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate a price panel and describe each asset.

    Example: neuralfolio data show gfc --start 2010-01-01 --out prices-2010.csv
    """
    from neuralfolio.data import simple_returns
    from neuralfolio.risk import TRADING_DAYS

    prices = load(source, start, end, assets, max_fill, drop, layout)
    if out is not None:
        _write_panel(prices, out)
    rets = simple_returns(prices)
    rows = [
        {"asset": a, "first": float(prices[a].iloc[0]), "last": float(prices[a].iloc[-1]),
         "annual_volatility": float(rets[a].std() * np.sqrt(TRADING_DAYS)),
         "total_return": float(prices[a].iloc[-1] / prices[a].iloc[0] - 1)}
        for a in prices.columns
    ]
    info = {"source": source, "dates": len(prices), "start": str(prices.index[0].date()),
            "end": str(prices.index[-1].date()), "assets": rows,
            "out": None if out is None else str(out)}
    if json_out:
        print_json(info)
        return
    table = Table(title=f"{source}: {len(prices)} dates, {info['start']} .. {info['end']}")
    for col in ("asset", "first price", "last price", "total return", "annual vol"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["asset"], f"{r['first']:.2f}", f"{r['last']:.2f}",
                      f"{r['total_return']:+.1%}", f"{r['annual_volatility']:.1%}")
    console.print(table)
    if out is not None:
        console.print(f"Wrote the validated panel to {out}", highlight=False)


def _write_panel(prices: pd.DataFrame, out: Path) -> None:
    name = out.name.lower()
    if not name.endswith((".csv", ".parquet", ".pq")):
        raise ConfigError(f"--out {out}: write a .csv or a .parquet file.")
    out.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".csv"):
        prices.to_csv(out, index_label="date")
    else:
        prices.to_parquet(out)


# --------------------------------------------------------------------------- labels
@app.command()
def labels(
    source: Annotated[str, typer.Argument(help="Data set name or CSV/Parquet path.")],
    objective: Annotated[str, typer.Option(
        help="min_variance, mean_variance, max_sharpe, min_cvar, risk_parity or "
             "max_diversification.")] = "min_variance",
    window: WindowOpt = 126,
    cov: Annotated[str, typer.Option(help="Covariance: ledoit_wolf, sample or ewma.")
                   ] = "ledoit_wolf",
    lower: Annotated[float, typer.Option(help="Lowest weight per asset (< 0 allows shorts).")
                     ] = 0.0,
    upper: Annotated[float, typer.Option(help="Highest weight per asset.")] = 1.0,
    risk_aversion: Annotated[float, typer.Option(help="mean_variance: mu'w - a * w'Sw.")
                             ] = 1.0,
    augment: Annotated[int, typer.Option(
        help="Also write N synthetic covariance scenarios with their optimal weights "
             "(needs --out).")] = 0,
    jobs: Annotated[int, typer.Option(help="Parallel workers (-1: every core).")] = 1,
    backend: Annotated[str | None, typer.Option(
        help="joblib backend: loky, threading, or a registered cluster engine (ray, dask).")
                       ] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    assets: AssetsOpt = None,
    drop: DropOpt = None,
    layout: LayoutOpt = "auto",
    out: Annotated[Path | None, typer.Option(help="Write the labels to this Parquet file.")] = None,
    max_fill: MaxFillOpt = 5,
    json_out: JsonOpt = False,
) -> None:
    """Rolling optimal weights, one row per date, each from the window of returns ending there.

    Example: neuralfolio labels sp500 --objective risk_parity --cov ewma --jobs 2 --out rp.parquet
    """
    from neuralfolio._cache import write_frame
    from neuralfolio.data import simple_returns
    from neuralfolio.optimize import Constraints, rolling_labels, scenario_labels

    if augment and out is None:
        raise ConfigError("--augment writes its scenarios next to --out; give --out too.")
    prices = load(source, start, end, assets, max_fill, drop, layout)
    constraints = Constraints(lower, upper)
    t0 = time.perf_counter()
    ls = rolling_labels(prices, objective=objective, window=window, cov=cov,
                        constraints=constraints, risk_aversion=risk_aversion, n_jobs=jobs,
                        backend=backend, cache_dir=cache_dir() / "labels",
                        progress=not json_out)
    seconds = time.perf_counter() - t0
    w = ls.weights
    if out is not None:
        write_frame(out, w, {"fingerprint": ls.fingerprint, "params": ls.params,
                             "n_fallbacks": ls.n_fallbacks})
    info = {
        "dates": len(w), "start": str(w.index[0].date()), "end": str(w.index[-1].date()),
        "params": ls.params, "fingerprint": ls.fingerprint, "from_cache": ls.from_cache,
        "n_fallbacks": ls.n_fallbacks,
        "seconds": seconds, "labels_per_second": len(w) / seconds if seconds > 0 else None,
        "mean_assets_held": float((w.abs() > 1e-6).sum(axis=1).mean()),
        "mean_weights": w.mean().round(4).to_dict(),
        "out": str(out) if out else None,
    }
    if augment:
        t0 = time.perf_counter()
        covs, sw = scenario_labels(
            simple_returns(prices).to_numpy(), augment, window=window, objective=objective,
            constraints=constraints, blend_share=0.25, factor_share=0.25, n_jobs=jobs,
            backend=backend, progress=not json_out)
        n = prices.shape[1]
        iu = np.triu_indices(n)
        frame = pd.DataFrame(
            np.hstack([covs[:, iu[0], iu[1]], sw]),
            columns=[f"cov:{prices.columns[i]}:{prices.columns[j]}" for i, j in zip(*iu,
                                                                                   strict=True)]
            + [f"w:{a}" for a in prices.columns],
        )
        scen_path = out.with_name(out.stem + ".scenarios.parquet")
        write_frame(scen_path, frame, {"params": {**ls.params, "n_scenarios": augment,
                                                  "source_period": [info["start"],
                                                                    info["end"]]}})
        info["scenarios"] = {"n": augment, "out": str(scen_path),
                             "seconds": time.perf_counter() - t0}
    if json_out:
        print_json(info)
        return
    origin = "cache" if ls.from_cache else f"{len(w) / seconds:,.0f} labels/s"
    console.print(
        f"[bold]{len(w)}[/] {objective} label dates {info['start']} .. {info['end']} "
        f"(window {window}, {cov} covariance, {origin}); on average "
        f"{info['mean_assets_held']:.1f} assets held."
    )
    if ls.n_fallbacks:
        console.print(f"{ls.n_fallbacks} date(s) had no asset with a positive mean return: "
                      "minimum variance was used there.")
    table = Table(title="Mean label weight per asset")
    table.add_column("asset")
    table.add_column("mean weight", justify="right")
    for a, v in w.mean().sort_values(ascending=False).items():
        table.add_row(str(a), f"{v:.1%}")
    console.print(table)
    if out:
        console.print(f"Wrote {out}")
    if augment:
        console.print(f"Wrote {augment} scenarios (covariances and weights) to "
                      f"{info['scenarios']['out']}")


# ---------------------------------------------------------------------------- train
@app.command()
def train(
    source: Annotated[str, typer.Argument(help="Data set name or CSV/Parquet path.")],
    out: Annotated[Path, typer.Option(help="Directory to save the model in.")] = Path(
        "models/latest"),
    overwrite: Annotated[bool, typer.Option(
        help="Replace a model already saved in --out.")] = False,
    config: Annotated[Path | None, typer.Option(
        help="TOML, YAML or JSON file of training settings (TrainConfig keys, optionally "
             "under [train]); flags given here override it.")] = None,
    features: Annotated[str, typer.Option(help="Inputs: 'risk' (default), 'prices' (the "
                                               "course's) or 'returns' (a window).")] = "risk",
    window: WindowOpt = 126,
    start: StartOpt = None,
    end: Annotated[str | None, typer.Option(help="Last training date.")] = None,
    assets: AssetsOpt = None,
    drop: DropOpt = None,
    layout: LayoutOpt = "auto",
    model: Annotated[str | None, typer.Option(
        help="dense, lstm, gru, rnn, tcn or attention.")] = None,
    head: Annotated[str | None, typer.Option(
        help="softmax, simplex, capped or long_short.")] = None,
    loss: Annotated[str | None, typer.Option(
        help="e.g. mse, l1, 'mse + 0.1*turnover', or an outcome loss such as variance "
             "(then no labels are made).")] = None,
    horizon: Annotated[int | None, typer.Option(
        help="Days of realized returns per decision for outcome losses.")] = None,
    hidden: Annotated[str | None, typer.Option(help="Hidden layer widths, e.g. 256,256.")
                      ] = None,
    activation: Annotated[str | None, typer.Option(help="relu, tanh or sigmoid.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adam, rmsprop or sgd.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    augment: Annotated[int | None, typer.Option(
        help="Synthetic covariance scenarios (risk inputs and imitation losses; default "
             "20000 there, else 0).")] = None,
    objective: Annotated[str, typer.Option(
        help="Optimizer whose rolling solutions are the labels (solved under the head's "
             "constraints: a capped head learns capped labels).")] = "min_variance",
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Save the loss curves to this PNG.")
                    ] = None,
    max_fill: MaxFillOpt = 5,
    json_out: JsonOpt = False,
) -> None:
    """Train a network (on the optimizer's weights, or on realized outcomes) and save it.

    Example: neuralfolio train gfc --end 2007-12-31 --features prices --out models/gfc
    """
    from neuralfolio.config import DEFAULT_IMITATION, read_config_file, with_defaults
    from neuralfolio.features import FeatureSpec
    from neuralfolio.nn import NeuralAllocator, TrainConfig, label_constraints
    from neuralfolio.optimize import rolling_labels

    _refuse_overwrite(out, overwrite)
    file_settings = {}
    if config is not None:
        d = read_config_file(config)
        file_settings = d.get("train", d)
    # the course's network on prices; a sequence network on return windows
    course = {"prices": {"model": "dense", "head": "softmax", "model_options": {}},
              "returns": {"model": "lstm", "model_options": {}}}.get(features, {})
    settings: dict = with_defaults(DEFAULT_IMITATION, {**course, **file_settings})
    if hidden is not None:
        try:
            settings["hidden"] = [int(h) for h in hidden.split(",") if h.strip()]
        except ValueError:
            raise ConfigError(
                f"--hidden must be comma-separated integers, got {hidden!r}.") from None
    flags = {"model": model, "head": head, "loss": loss, "horizon": horizon,
             "activation": activation, "optimizer": optimizer, "lr": lr, "max_epochs": epochs,
             "seed": seed}
    # flags over the file; another family or head drops the file's options for it
    settings = with_defaults(settings, {k: v for k, v in flags.items() if v is not None})
    cfg = TrainConfig.from_dict(settings)
    spec = FeatureSpec(features, window)
    imitation = "target" in cfg.loss_fn().needs
    if augment is None:
        augment = 20_000 if features == "risk" and imitation else 0
    prices = load(source, start, end, assets, max_fill, drop, layout)
    labels = None
    if imitation:
        labels = rolling_labels(prices, objective=objective, window=window,
                                constraints=label_constraints(cfg, prices.shape[1]),
                                cache_dir=cache_dir() / "labels")
    nn_model = NeuralAllocator(spec, cfg, augment=augment)
    t0 = time.perf_counter()
    nn_model.fit(prices, labels, progress=not json_out)
    seconds = time.perf_counter() - t0
    nn_model.save(out)
    h = nn_model.history_
    if plot is not None:
        h.plot(plot)
    info = {"model": str(out), "network": cfg.model, "head": cfg.head, "loss": h.loss,
            "features": features, "training_period": nn_model.training_period_,
            "epochs": len(h.train_loss), "best_epoch": h.best_epoch,
            "train_loss": h.train_loss[h.best_epoch], "val_loss": h.val_loss[h.best_epoch],
            "seconds": seconds, "device": h.device, "labels": nn_model.labels_}
    if json_out:
        print_json(info)
        return
    console.print(
        f"Trained {'an' if cfg.model[0] in 'aeiou' else 'a'} {cfg.model} network ({cfg.head} "
        f"head, loss {h.loss}) on "
        f"{info['training_period'][0]} .. {info['training_period'][1]} ({features} inputs) in "
        f"{seconds:.1f}s on {h.device}; best epoch {h.best_epoch + 1} of {len(h.train_loss)}, "
        f"validation loss {info['val_loss']:.4g}. Saved to {out}/"
        + (f"; loss curves in {plot}" if plot else "")
    )
    if nn_model.labels_ and "objective" in nn_model.labels_:
        c = nn_model.labels_["constraints"]
        console.print(f"Labels: {nn_model.labels_['objective']} over "
                      f"{nn_model.labels_['window']} days, weights in [{c['lower']}, "
                      f"{c['upper']}]" + (f", short at most {c['max_short']:g}"
                                          if c.get("max_short") is not None else "")
                      + " (recorded in the manifest).", highlight=False)


def _refuse_overwrite(out: Path, overwrite: bool) -> None:
    manifest = out / "manifest.json"
    if manifest.exists() and not overwrite:
        try:
            period = json.loads(manifest.read_text()).get("training_period")
        except (OSError, ValueError):
            period = None
        trained = f" (trained on {period[0]}..{period[1]})" if period else ""
        raise ConfigError(f"{out} already holds a model{trained}; pass --overwrite to replace "
                          "it, or choose another directory with --out.")


# -------------------------------------------------------------------------- predict
@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Directory of a saved model.")],
    prices: Annotated[str | None, typer.Option(
        "--prices", help="Today's prices in asset order (1.0,2.0,...) or as NAME=VALUE pairs "
                         "(models on price inputs).")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="CSV/Parquet price history; weights for its last date (or every date "
                       "with --all).")] = None,
    all_dates: Annotated[bool, typer.Option("--all", help="Weights for every date of --file."
                                            )] = False,
    strict: Annotated[bool, typer.Option(
        help="Refuse inputs beyond --max-z training standard deviations instead of warning."
    )] = False,
    max_z: Annotated[float, typer.Option(
        help="Inputs further than this many training standard deviations from their "
             "training mean are out of distribution.")] = 8.0,
    start: StartOpt = None,
    end: EndOpt = None,
    assets: AssetsOpt = None,
    drop: DropOpt = None,
    layout: LayoutOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Weights for new prices from a trained model: the course's last step.

    Prices are matched to the model's assets by name. Inputs outside what the model saw in
    training (beyond --max-z standard deviations) give a warning with the z-score, or an
    error with --strict.

    Example: neuralfolio predict models/gfc --prices BAC=30.1,JPM=41.2,GE=16.3,HD=28.0
    """
    from neuralfolio.nn import NeuralAllocator

    model = NeuralAllocator.load(model_dir)
    if (prices is None) == (file is None):
        raise ConfigError("Give exactly one of --prices or --file.")
    if prices is not None:
        if model.features.lookback > 1:
            raise ConfigError(
                f"This model takes risk inputs from {model.features.lookback} days of prices; "
                "give them with --file (a price history), not --prices."
            )
        row = _parse_prices(prices, model.assets_)
        given = pd.DataFrame([row], index=pd.Index(["given prices"]), columns=model.assets_)
        weights = model.predict(given, guard="raise" if strict else "warn", max_z=max_z)
    else:
        frame = load(str(file), start, end, assets, None, drop, layout)
        weights = model.predict(frame, guard="raise" if strict else "warn", max_z=max_z)
        if not all_dates:
            weights = weights.iloc[[-1]]
    labels = [d.date().isoformat() if isinstance(d, pd.Timestamp) else str(d)
              for d in weights.index]
    if json_out:
        print_json({k: row.to_dict() for k, (_, row) in zip(labels, weights.iterrows(),
                                                                strict=True)})
        return
    table = Table(title=f"Weights from {model_dir}")
    table.add_column("date")
    for a in weights.columns:  # the weights' own names: never another order's headers
        table.add_column(str(a), justify="right")
    for label, (_, row) in zip(labels, weights.iterrows(), strict=True):
        table.add_row(label, *(f"{v:.1%}" for v in row))
    console.print(table)


def _parse_prices(text: str, assets: list[str]) -> list[float]:
    from neuralfolio._cli_risk import parse_per_asset

    numbers = parse_per_asset(text, assets, "--prices")
    bad = [a for a, v in zip(assets, numbers, strict=True) if v <= 0]
    if bad:
        raise ConfigError(f"--prices must be positive; check {bad}.")
    return numbers


# ------------------------------------------------------------------------- backtest
def _summary_table(result, title: str) -> Table:
    s = result.summary()
    table = Table(title=title)
    table.add_column("policy", no_wrap=True)
    for label in ["return", "volatility", "Sharpe", "max DD", "turnover/day", "cost/yr",
                  "L1 to opt.", "update µs", "fit s"]:
        table.add_column(label, justify="right")
    for name, r in s.iterrows():
        table.add_row(
            name, f"{r.annual_return:.1%}", f"{r.volatility:.1%}", f"{r.sharpe:.2f}",
            f"{r.max_drawdown:.1%}", f"{r.turnover:.3f}", f"{r.cost:.2%}",
            f"{r.l1_to_optimizer:.3f}", f"{r.update_us:,.0f}", f"{r.fit_seconds:.1f}",
        )
    return table


def _interval(row, scale: float) -> str:
    mark = "*" if row.low > 0 or row.high < 0 else ""
    return (f"{row.estimate * scale:+.2f} [{row.low * scale:+.2f},"
            f"{row.high * scale:+.2f}]{mark}")


def _paired_rich(paired: pd.DataFrame, baselines: list[str]) -> list[Table]:
    """One table per baseline: each policy's volatility (points) and Sharpe differences."""
    tables = []
    for b in baselines:
        rows = paired.xs(b, level=1) if b in paired.index.get_level_values(1) else None
        if rows is None:
            continue
        table = Table(title=f"Minus {b}, 95% paired moving-block bootstrap intervals (21-day "
                            "blocks); * excludes 0")
        table.add_column("policy", no_wrap=True)
        table.add_column("volatility, pts", justify="right", no_wrap=True)
        table.add_column("Sharpe", justify="right", no_wrap=True)
        for name in dict.fromkeys(rows.index.get_level_values(0)):
            table.add_row(name, _interval(rows.loc[(name, "volatility")], 100.0),
                          _interval(rows.loc[(name, "sharpe")], 1.0))
        tables.append(table)
    return tables


def _run(config: RunConfig, out: Path, json_out: bool, title: str, report: bool = True):
    from neuralfolio.pipeline import paired_table, run_backtest

    t0 = time.perf_counter()
    result = run_backtest(config, out, progress=not json_out)
    paired = paired_table(result, config.baselines)
    (out / "paired.json").write_text(json.dumps(
        [{"policy": p, "baseline": b, "statistic": st, **row.to_dict()}
         for (p, b, st), row in paired.iterrows()], indent=2))
    page = None
    if report:
        from neuralfolio.report import write_report

        page = write_report(result, out, title=title, benchmark=config.benchmark,
                            baselines=tuple(config.baselines),
                            focus=tuple(config.report_focus) if config.report_focus else None)
    seconds = time.perf_counter() - t0
    if json_out:
        summary = json.loads((out / "summary.json").read_text())
        summary["paired"] = json.loads((out / "paired.json").read_text())
        print_json(summary)
        return result
    console.print(_summary_table(result, title))
    for table in _paired_rich(paired, config.baselines):
        console.print(table)
    ex = config.execution()
    console.print(
        f"{len(result.retrain_dates)} re-trainings ({config.retrain_every}); rebalancing "
        f"{ex.rebalance}, costs {ex.cost_bps:g} bps of the amount traded; {seconds:.0f}s in all. "
        f"Wrote {out}/ (summary.json, paired.json, returns.csv, weights/"
        + (f", {page.name}" if page else "") + ")."
    )
    return result


_RUN = run_defaults()


def _shown(help_text: str, name: str) -> str:
    """A backtest option's help with the RunConfig default it falls back to."""
    return f"{help_text} [default: {_RUN[name]}]"


@app.command()
def backtest(
    source: Annotated[str | None, typer.Argument(
        help=_shown("Data set name or CSV/Parquet path (overrides the config's).", "data"))
    ] = None,
    config: Annotated[Path | None, typer.Option(
        help="TOML, YAML or JSON run config (RunConfig keys; [train] and [outcome_train] "
             "hold the networks' settings); options given here override it.")] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    assets: AssetsOpt = None,
    drop: DropOpt = None,
    layout: Annotated[str | None, typer.Option(
        help=_shown("File layout: auto, wide or long (date, ticker, price columns).",
                    "layout"))] = None,
    test_start: Annotated[str | None, typer.Option(
        help=_shown("First out-of-sample date; the dates before it are the first "
                    "training period.", "test_start"))] = None,
    test_end: Annotated[str | None, typer.Option(
        help="Last out-of-sample date. [default: the data's last date]")] = None,
    retrain_every: Annotated[str | None, typer.Option(
        help=_shown("Trading days between re-trainings, or weekly/monthly/quarterly/yearly.",
                    "retrain_every"))] = None,
    train_window: Annotated[int | None, typer.Option(
        help=_shown("Rolling training window in dates (0: expanding, all the history).",
                    "train_window"))] = None,
    purge: Annotated[int | None, typer.Option(
        help=_shown("Dates left out between the training data and each re-training date.",
                    "purge"))] = None,
    rebalance: Annotated[str | None, typer.Option(
        help=_shown("daily, weekly, monthly, quarterly or threshold.", "rebalance"))] = None,
    threshold: Annotated[float | None, typer.Option(
        help=_shown("Drift (sum of |weight - target|) that triggers a threshold rebalance.",
                    "threshold"))] = None,
    cost_bps: Annotated[float | None, typer.Option(
        help=_shown("Transaction cost in basis points of the amount traded.", "cost_bps"))
    ] = None,
    cash_rate: Annotated[float | None, typer.Option(
        help=_shown("Annual rate on cash.", "cash_rate"))] = None,
    window: Annotated[int | None, typer.Option(
        help=_shown("Returns per covariance window.", "window"))] = None,
    augment: Annotated[int | None, typer.Option(
        help=_shown("Synthetic scenarios per training.", "augment"))] = None,
    policies: Annotated[str | None, typer.Option(
        help=f"Comma-separated subset of: {', '.join(POLICY_NAMES)}, or skfolio:NAME. "
             "[default: all of them]")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed of the networks and scenarios. [default: 0]")] = None,
    max_fill: Annotated[int | None, typer.Option(
        help=_shown("Longest gap of missing prices forward-filled with a warning.",
                    "max_fill"))] = None,
    jobs: Annotated[int | None, typer.Option(
        help=_shown("Parallel walk-forward workers (-1: every core); results do not "
                    "depend on it.", "n_jobs"))] = None,
    backend: Annotated[str | None, typer.Option(
        help="joblib backend: loky, threading, or a registered one (ray, dask). "
             "[default: loky]")] = None,
    report: Annotated[bool, typer.Option(help="Write report.html in the run directory.")
                      ] = True,
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/backtest"),
    json_out: JsonOpt = False,
) -> None:
    """Walk-forward backtest of the network against the optimizer and simple rules.

    Example: neuralfolio backtest gfc --test-start 2008-01-01 --retrain-every monthly
    --cost-bps 10
    """
    cfg = RunConfig.from_file(config) if config else RunConfig()
    overrides = {"data": source, "start": start, "end": end, "assets": names(assets),
                 "drop": names(drop), "layout": layout, "test_start": test_start,
                 "test_end": test_end,
                 "retrain_every": retrain_every, "train_window": train_window, "purge": purge,
                 "rebalance": rebalance, "threshold": threshold, "cost_bps": cost_bps,
                 "cash_rate": cash_rate, "window": window, "augment": augment,
                 "policies": names(policies), "max_fill": max_fill, "n_jobs": jobs,
                 "backend": backend}
    cfg = RunConfig.from_dict({**cfg.to_dict(),
                               **{k: v for k, v in overrides.items() if v is not None}})
    if seed is not None:
        cfg.train.seed = cfg.outcome_train.seed = seed
    _run(cfg, out, json_out, f"Walk-forward on {cfg.data}, out of sample from {cfg.test_start}",
         report)


@app.command()
def demo(
    case: Annotated[str, typer.Option(
        help="sp500 (the main job) or gfc (the 2008 crisis case study).")] = "sp500",
    out: Annotated[Path | None, typer.Option(
        help="Run directory (default runs/demo, or runs/gfc for the crisis case).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the networks and scenarios.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """The main job: walk-forward on bundled data, with costs, statistics and a report.

    Every policy, paired bootstrap intervals, and runs/demo/report.html.

    Example: neuralfolio demo; neuralfolio demo --case gfc
    """
    from neuralfolio.pipeline import DEMO_CASES, demo_config

    cfg = demo_config(case, seed)
    out = out or Path("runs/demo" if case == "sp500" else f"runs/{case}")
    if not json_out:
        console.print(f"[bold]neuralfolio demo --case {case}[/]: {DEMO_CASES[case]}.")
    title = f"Out of sample {cfg.test_start[:4]}-{cfg.test_end[:4]}, {cfg.data}"
    result = _run(cfg, out, json_out, title)
    if not json_out:
        console.print(_demo_lesson(result, cfg))


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by backtest or "
                                                 "demo.")],
) -> None:
    """Write RUN_DIR/report.html (self-contained, opens offline) and RUN_DIR/report/*.png.

    Example: neuralfolio report runs/demo
    """
    from neuralfolio.report import report_from_run_dir

    page = report_from_run_dir(run_dir)
    console.print(f"Wrote {page} (figures in {page.parent / 'report'}/).")


def _demo_lesson(result, cfg: RunConfig) -> str:
    """Two sentences that read the demo's table for a newcomer."""
    from neuralfolio.pipeline import load_run_prices

    s = result.summary()
    prices = load_run_prices(cfg)
    train = prices.loc[prices.index < pd.Timestamp(cfg.test_start)]
    test = prices.loc[result.next_returns.index]
    outside = ((test > train.max()) | (test < train.min())).any(axis=1).mean()
    lines = []
    if {"network_prices", "equal_weight"} <= set(s.index):
        lines.append(
            f"The course's price inputs: L1 {s.loc['network_prices', 'l1_to_optimizer']:.2f} to "
            f"the optimizer, against {s.loc['equal_weight', 'l1_to_optimizer']:.2f} for fixed "
            f"1/N weights: on {outside:.0%} of test dates some price lies outside its training "
            "range, where a network fitted on prices has never been."
        )
    if {"network", "optimizer_daily"} <= set(s.index):
        lines.append(
            f"Risk inputs: L1 {s.loc['network', 'l1_to_optimizer']:.2f}, volatility "
            f"{s.loc['network', 'volatility']:.1%} against the daily optimizer's "
            f"{s.loc['optimizer_daily', 'volatility']:.1%}, at "
            f"{s.loc['network', 'update_us']:,.0f} µs per update against "
            f"{s.loc['optimizer_daily', 'update_us']:,.0f} µs."
        )
    if {"network_outcome", "optimizer_daily"} <= set(s.index):
        lines.append(
            f"Trained on realized variance, without labels: volatility "
            f"{s.loc['network_outcome', 'volatility']:.1%} against the daily optimizer's "
            f"{s.loc['optimizer_daily', 'volatility']:.1%}."
        )
    if cfg.report_focus:
        start, end, label = cfg.report_focus
        window = result.reference.loc[start:end]
        nets = [n for n in result.weights if n.startswith("network")]
        if len(window) and nets:
            gaps = ", ".join(
                f"{n} {(result.weights[n].loc[window.index] - window).abs().sum(axis=1).mean():.2f}"
                for n in nets)
            lines.append(f"Through {label}: mean L1 to the daily optimizer {gaps} "
                         "(report.html shows the weights day by day).")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- risk
from neuralfolio._cli_risk import risk  # noqa: E402 - kept beside its tests in its own module

app.command("risk")(risk)

from neuralfolio._cli_scratch import scratch_app  # noqa: E402 - the chapter's NumPy networks

app.add_typer(scratch_app, name="scratch")

from neuralfolio import _cli_serve  # noqa: E402 - the weights service's commands

for _command in (_cli_serve.serve, _cli_serve.retrain, _cli_serve.register_rule,
                 _cli_serve.audit, _cli_serve.replay):
    app.command()(_command)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, NeuralfolioWarning):
        err_console.print(f"[bold yellow]warning:[/] {message}", highlight=False)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main() -> None:
    """Console entry point: clean one-line errors and warnings instead of tracebacks."""
    warnings.simplefilter("default", NeuralfolioWarning)
    warnings.showwarning = _show_warning
    try:
        app()
    except NeuralfolioError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
