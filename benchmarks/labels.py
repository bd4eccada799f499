"""Labels per second: rolling long-only minimum-variance weights, fast path vs alternatives.

A *label* is the minimum-variance portfolio of one trailing window of 126 daily returns,
``min w' S w  s.t.  sum(w) = 1, 0 <= w <= 1``, with ``S`` the Ledoit-Wolf covariance of
the window. Every method below goes from returns to weights, so the covariance estimate
is timed together with the solve.

Methods
-------
fast path
    ``neuralfolio.risk.rolling_ledoit_wolf`` (batched NumPy over all windows) followed by
    ``neuralfolio.optimize.MinVarianceQP.solve_many`` (one OSQP problem set up once, each
    window warm-started from the previous solution). Timed end to end, including the
    problem set-up; the solve alone is also reported.
skfolio
    ``MeanRisk(prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()))``
    refitted on each window, as a user would write it first; once with skfolio's default
    solver tolerances and once with tight CLARABEL tolerances (1e-12), for the agreement
    check.
cvxpy
    One DPP-parametrized problem ``min ||F w||^2  s.t.  sum(w) = 1, w >= 0`` built once;
    per window: Ledoit-Wolf estimate (``neuralfolio.risk.ledoit_wolf``), division by the
    mean variance, Cholesky factor ``F`` with NumPy, then ``prob.solve(CLARABEL)``
    re-using the compiled problem. Scaling does not change the minimizer; without it
    CLARABEL's absolute tolerances are loose next to daily variances of order 1e-4, and
    an unscaled variant is shown on sp500 to make that visible. The first solve
    (canonicalization) is reported separately as set-up and not counted per label.

Part 1 uses the bundled sp500 prices (20 assets, every window for the fast path, an
evenly spaced subset of windows for skfolio and cvxpy). Part 2 uses synthetic prices with
100 and 500 assets and one year (252) of daily labels, fast path vs cvxpy; when cvxpy runs
on fewer windows, its seconds per year are extrapolated and labelled so.

Reading the tables
------------------
``labels/s`` is windows per second of wall time and ``ms / label`` its inverse.
``fast path ×`` is the fast path's end-to-end labels/s divided by the row's labels/s:
``50`` means the fast path produces labels 50 times faster than that method (values
below 1 mean the method is faster). ``max |Δw|`` is the largest absolute weight difference
to the fast path on the windows both solved, and ``var. excess`` the largest relative
excess of the fast path's portfolio variance over the method's (positive: the fast path's
portfolio is slightly worse; negative: the method's is). The machine is shared and noisy:
read the ratios rather than the absolute times.

Timing uses ``time.perf_counter``: the median of ``--repeats`` runs for the fast path
(except at 500 assets, one long run) and one long run over the subset for the others.
Thread counts are not set by this script (BLAS and the solvers use their defaults).
OSQP statuses are recorded by a thin wrapper around the solver's ``solve`` (negligible
cost); any status other than ``solved`` is printed.

Run: ``.venv/bin/python benchmarks/labels.py [--quick]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field

import clarabel
import cvxpy as cp
import numpy as np
import osqp
import skfolio
from rich.console import Console
from rich.table import Table
from skfolio.moments import LedoitWolf
from skfolio.optimization import MeanRisk
from skfolio.prior import EmpiricalPrior

from neuralfolio.data import load_prices, simple_returns, synthetic_prices
from neuralfolio.errors import SolverError
from neuralfolio.optimize import MinVarianceQP
from neuralfolio.risk import TRADING_DAYS, ledoit_wolf, rolling_ledoit_wolf

WINDOW = 126
TIGHT = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "RAYON_NUM_THREADS")

console = Console()
if not console.is_terminal:  # piped to a file: do not wrap the tables at 80 columns
    console = Console(width=130)


@dataclass
class Run:
    """Weights of some windows and the wall time it took to produce them."""

    name: str
    index: np.ndarray
    weights: np.ndarray
    seconds: float
    setup: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def per_label(self) -> float:
        return self.seconds / len(self.index)


@dataclass
class FastRun:
    """Median timings of the fast path over all windows."""

    weights: np.ndarray
    covs: np.ndarray
    total: float
    cov: float
    solve: float
    statuses: Counter


def _record_statuses(qp: MinVarianceQP) -> Counter:
    """Count OSQP's status of every solve (wraps the private solver; empty if absent)."""
    counts: Counter = Counter()
    solver = getattr(qp, "_solver", None)
    if solver is None:
        return counts
    inner = solver.solve

    def solve(*args, **kwargs):
        result = inner(*args, **kwargs)
        counts[str(result.info.status)] += 1
        return result

    solver.solve = solve
    return counts


def fast_path(returns: np.ndarray, repeats: int) -> FastRun:
    """Labels of every window: rolling Ledoit-Wolf + warm-started OSQP, median of runs."""
    totals, covs_t, solves = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        qp = MinVarianceQP(returns.shape[1])
        statuses = _record_statuses(qp)
        t1 = time.perf_counter()
        covs = rolling_ledoit_wolf(returns, WINDOW)
        t2 = time.perf_counter()
        weights = qp.solve_many(covs)
        t3 = time.perf_counter()
        totals.append(t3 - t0)
        covs_t.append(t2 - t1)
        solves.append(t3 - t2)
    med = statistics.median
    return FastRun(weights, covs, med(totals), med(covs_t), med(solves), statuses)


def skfolio_loop(returns: np.ndarray, index: np.ndarray, name: str,
                 solver_params: dict | None = None) -> Run:
    """Refit skfolio's MeanRisk on each window in ``index``; one long run."""
    model = MeanRisk(prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()),
                     solver_params=solver_params)
    model.fit(returns[index[0] : index[0] + WINDOW])  # warm-up: first-call overheads
    out = np.empty((len(index), returns.shape[1]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        for k, i in enumerate(index):
            out[k] = model.fit(returns[i : i + WINDOW]).weights_
        seconds = time.perf_counter() - t0
    run = Run(name, index, out, seconds)
    if caught:
        messages = Counter(str(w.message).split(".")[0] for w in caught)
        run.notes += [f"{name}: {c} warning(s) '{m}'" for m, c in messages.items()]
    return run


def cvxpy_loop(returns: np.ndarray, index: np.ndarray, name: str, *, scale: bool = True) -> Run:
    """Re-solve one parametrized cvxpy problem per window with CLARABEL; one long run."""
    n = returns.shape[1]
    t0 = time.perf_counter()
    factor = cp.Parameter((n, n))
    w = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(factor @ w)), [cp.sum(w) == 1, w >= 0])
    assert prob.is_dcp(dpp=True)
    statuses: Counter = Counter()

    def solve(i: int) -> np.ndarray:
        cov = ledoit_wolf(returns[i : i + WINDOW])[0]
        if scale:
            cov = cov / (np.trace(cov) / n)
        factor.value = np.linalg.cholesky(cov).T
        prob.solve(solver=cp.CLARABEL)
        if prob.status != cp.OPTIMAL:
            statuses[prob.status] += 1
        return w.value

    solve(int(index[0]))  # build + canonicalize once (set-up, not counted per label)
    setup = time.perf_counter() - t0
    out = np.empty((len(index), n))
    t0 = time.perf_counter()
    for k, i in enumerate(index):
        out[k] = solve(int(i))
    run = Run(name, index, out, time.perf_counter() - t0, setup=setup)
    run.notes += [f"{name}: CLARABEL status '{s}' on {c} window(s)" for s, c in statuses.items()]
    return run


def agreement(fast: FastRun, run: Run) -> tuple[float, float]:
    """Max |Δw| and max relative variance excess of the fast path on the shared windows."""
    wf = fast.weights[run.index]
    covs = fast.covs[run.index]
    var_f = np.einsum("ki,kij,kj->k", wf, covs, wf)
    var_m = np.einsum("ki,kij,kj->k", run.weights, covs, run.weights)
    return float(np.abs(wf - run.weights).max()), float((var_f / var_m - 1.0).max())


def _table(title: str, year: bool) -> Table:
    table = Table(title=title)
    table.add_column("method", no_wrap=True)
    table.add_column("windows", justify="right")
    table.add_column("labels/s", justify="right")
    table.add_column("ms / label", justify="right")
    if year:
        table.add_column("s / year (252)", justify="right")
    table.add_column("fast path ×", justify="right")
    table.add_column("max |Δw|", justify="right")
    table.add_column("var. excess", justify="right")
    return table


def _row(table: Table, name: str, windows: int, seconds_per_label: float, base: float,
         year: str | None = None, diff: tuple[float, float] | None = None) -> None:
    rate = 1.0 / seconds_per_label
    shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"
    cells = [name, f"{windows:,}", shown, f"{seconds_per_label * 1e3:,.3f}"]
    if year is not None:
        cells.append(year)
    cells.append(f"{base / rate:,.1f}")
    cells += [f"{diff[0]:.1e}", f"{diff[1]:+.1e}"] if diff else ["—", "—"]
    table.add_row(*cells)


def _runs(repeats: int) -> str:
    return f"median of {repeats}" if repeats > 1 else "1 run"


def _status_note(n_assets: int, fast: FastRun) -> str:
    bad = {s: c for s, c in fast.statuses.items() if s != "solved"}
    if not fast.statuses:
        return f"{n_assets} assets: OSQP statuses unavailable (solver not instrumented)."
    if bad:
        return f"{n_assets} assets: OSQP status not 'solved' on some windows: {bad}"
    return f"{n_assets} assets: OSQP status 'solved' on all {fast.statuses.total():,} windows."


def header(args: argparse.Namespace) -> None:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    threads = {v: os.environ[v] for v in THREAD_VARS if v in os.environ}
    libs = ", ".join(f"{m.__name__} {m.__version__}" for m in (np, osqp, cp, clarabel, skfolio))
    console.rule("[bold]Rolling minimum-variance labels per second")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    console.print(f"cores: {cores} (usable by this process: {usable}); load average at start: "
                  f"{load}")
    console.print(f"libraries: {libs}")
    console.print("thread settings: not set by this script; environment: "
                  + (", ".join(f"{k}={v}" for k, v in threads.items()) or "none set"))
    console.print(f"window: {WINDOW} daily returns, Ledoit-Wolf covariance, 0 <= w <= 1, "
                  f"sum(w) = 1; mode: {'quick' if args.quick else 'full'}; "
                  f"fast-path repeats: {args.repeats}\n")


def part_sp500(args: argparse.Namespace) -> None:
    returns = simple_returns(load_prices("sp500")).to_numpy()
    n = returns.shape[1]
    fast = fast_path(returns, args.repeats)
    n_windows = len(fast.weights)
    index = np.unique(np.linspace(0, n_windows - 1, args.subset).round().astype(int))
    runs = [
        skfolio_loop(returns, index, "skfolio MeanRisk, default tolerances"),
        skfolio_loop(returns, index, "skfolio MeanRisk, tolerances 1e-12", TIGHT),
        cvxpy_loop(returns, index, "cvxpy + CLARABEL, scaled"),
        cvxpy_loop(returns, index, "cvxpy + CLARABEL, unscaled", scale=False),
    ]
    base = n_windows / fast.total
    table = _table(f"sp500, {n} assets: labels from returns ({n_windows:,} windows; "
                   f"others on {len(index)} evenly spaced windows)", year=False)
    _row(table, f"fast path, end to end ({_runs(args.repeats)})", n_windows,
         fast.total / n_windows, base)
    _row(table, "  of which OSQP solve", n_windows, fast.solve / n_windows, base)
    _row(table, "  of which rolling Ledoit-Wolf", n_windows, fast.cov / n_windows, base)
    for run in runs:
        _row(table, run.name, len(run.index), run.per_label, base, diff=agreement(fast, run))
    console.print(table)
    notes = [_status_note(n, fast)]
    for run in runs:
        notes += run.notes
        if run.setup:
            notes.append(f"{run.name}: set-up (build + first solve) {run.setup * 1e3:.0f} ms")
    diffs = {run.name: agreement(fast, run)[0] for run in runs}
    tight, scaled = runs[1].name, runs[2].name
    ok = max(diffs[tight], diffs[scaled]) <= 1e-4
    notes.append(f"agreement check (tight skfolio and scaled cvxpy vs fast path, max |Δw| "
                 f"<= 1e-4): {'PASS' if ok else 'FAIL'} "
                 f"({diffs[tight]:.1e}, {diffs[scaled]:.1e})")
    for note in notes:
        console.print(f"  • {note}")
    console.print()


def part_synthetic(n_assets: int, cvxpy_windows: int, repeats: int) -> None:
    prices = synthetic_prices(n_assets, WINDOW + TRADING_DAYS + 1, seed=0)
    # Exactly one year of windows: the last WINDOW + 251 returns.
    returns = simple_returns(prices).to_numpy()[-(WINDOW + TRADING_DAYS - 1) :]
    title = f"synthetic, {n_assets} assets: one year ({TRADING_DAYS}) of daily labels"
    try:
        fast = fast_path(returns, repeats)
    except SolverError as exc:
        console.print(f"[bold red]{title}: the fast path FAILED: {exc}[/]\n")
        return
    n_windows = len(fast.weights)
    index = np.unique(np.linspace(0, n_windows - 1, cvxpy_windows).round().astype(int))
    run = cvxpy_loop(returns, index, "cvxpy + CLARABEL, scaled")
    base = n_windows / fast.total
    table = _table(title, year=True)
    _row(table, f"fast path, end to end ({_runs(repeats)})", n_windows,
         fast.total / n_windows, base, year=f"{fast.total:,.1f}")
    _row(table, "  of which OSQP solve", n_windows, fast.solve / n_windows, base,
         year=f"{fast.solve:,.1f}")
    _row(table, "  of which rolling Ledoit-Wolf", n_windows, fast.cov / n_windows, base,
         year=f"{fast.cov:,.1f}")
    year = run.setup + TRADING_DAYS * run.per_label
    measured = len(index) == TRADING_DAYS
    label = f"{year:,.1f}" if measured else f"{year:,.1f} (extrapolated)"
    _row(table, run.name, len(index), run.per_label, base, year=label,
         diff=agreement(fast, run))
    console.print(table)
    notes = [_status_note(n_assets, fast), *run.notes,
             f"cvxpy set-up (build + first solve) {run.setup:.2f} s, included in s / year"]
    if not measured:
        notes.append(f"cvxpy s / year extrapolated: set-up + {TRADING_DAYS} × mean time per "
                     f"label on {len(index)} evenly spaced windows")
    if n_assets == 500:
        verdict = "yes" if fast.total < 120 else "NO"
        notes.append(f"[bold]done-when: fast path, {n_assets} assets, {n_windows} daily labels "
                     f"from returns in {fast.total:.1f} s on {os.cpu_count()} cores — "
                     f"under 2 minutes: {verdict}[/]")
    for note in notes:
        console.print(f"  • {note}")
    console.print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small subsets, one repeat, skip 500 assets")
    parser.add_argument("--repeats", type=int, default=None,
                        help="fast-path runs to take the median of (default 3, quick 1)")
    parser.add_argument("--subset", type=int, default=None,
                        help="sp500 windows for skfolio and cvxpy (default 200, quick 30)")
    parser.add_argument("--windows-100", type=int, default=None,
                        help="cvxpy windows at 100 assets (default 252, quick 30)")
    parser.add_argument("--windows-500", type=int, default=20,
                        help="cvxpy windows at 500 assets (default 20)")
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.subset = args.subset or (30 if args.quick else 200)
    args.windows_100 = min(args.windows_100 or (30 if args.quick else 252), TRADING_DAYS)
    args.windows_500 = min(args.windows_500, TRADING_DAYS)

    start = time.perf_counter()
    header(args)
    part_sp500(args)
    part_synthetic(100, args.windows_100, args.repeats)
    if args.quick:
        console.print("  • quick mode: 500 assets skipped\n")
    else:
        part_synthetic(500, args.windows_500, 1)
    console.print(f"total wall time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
