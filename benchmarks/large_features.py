"""The stepped risk inputs alone (one price row -> network inputs) at large universes.

Times ``FeatureStepper.push`` + ``features()`` with the unconstrained weights solved
directly (O(n^3)) and through Woodbury's identity on the window (O(W n + W^3)), and the
from-scratch ``latest_features``, on synthetic prices; checks that both stepped paths
equal the batch inputs. Read the ratios, not the absolute times (shared, noisy machines).

Run: .venv/bin/python benchmarks/large_features.py [--assets 100 200 500] [--window 126]
     [--repeats 200] [--blas-threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from neuralfolio.data import synthetic_prices
from neuralfolio.features import FeatureSpec, FeatureStepper, latest_features
from neuralfolio.risk import woodbury_is_cheaper


def _stepped(prices: np.ndarray, spec: FeatureSpec, solve: str, repeats: int):
    f = FeatureStepper(spec, solve=solve).start(prices[: spec.lookback])
    times = []
    for row in prices[spec.lookback : spec.lookback + repeats]:
        t0 = time.perf_counter()
        f.push(row, check=False)
        f.features()
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e6, f.features().copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, nargs="+", default=[100, 200, 500])
    parser.add_argument("--window", type=int, default=126)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--blas-threads", type=int, default=None)
    args = parser.parse_args()
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads, user_api="blas")

    spec = FeatureSpec("risk", args.window)
    table = Table(title=f"Stepped risk inputs (push + features), window {args.window}, "
                        f"{args.repeats} steps")
    for col in ("assets", "auto picks", "direct p50/p99 µs", "Woodbury p50/p99 µs",
                "from scratch p50 µs", "direct / Woodbury p50", "max rel. diff to batch"):
        table.add_column(col, justify="right")
    for n in args.assets:
        prices = synthetic_prices(n, spec.lookback + args.repeats, seed=3).to_numpy()
        direct, x_d = _stepped(prices, spec, "direct", args.repeats)
        wood, x_w = _stepped(prices, spec, "woodbury", args.repeats)
        last = prices[: spec.lookback + args.repeats]
        scratch = []
        for k in range(min(args.repeats, 30)):
            t0 = time.perf_counter()
            latest_features(last[: len(last) - k], spec)
            scratch.append(time.perf_counter() - t0)
        batch = latest_features(last, spec)
        rel = max(float(np.abs(x - batch).max() / np.abs(batch).max()) for x in (x_d, x_w))
        d50, d99 = np.percentile(direct, [50, 99])
        w50, w99 = np.percentile(wood, [50, 99])
        table.add_row(str(n), "Woodbury" if woodbury_is_cheaper(n, args.window) else "direct",
                      f"{d50:,.0f} / {d99:,.0f}", f"{w50:,.0f} / {w99:,.0f}",
                      f"{np.median(scratch) * 1e6:,.0f}", f"{d50 / w50:.1f}×", f"{rel:.1e}")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
