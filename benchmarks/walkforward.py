"""Walk-forward wall time: folds in one process vs in parallel (joblib), the same run.

The run is the crisis case's shape (bundled ``gfc``: 4 stocks, test 2008-2010, a fit every
63 test dates, so 12 folds) with two policies whose folds are independent: the daily
minimum-variance optimizer and a dense risk network re-fitted from scratch at every fold
(``fine_tune=False``, so ``carries_state`` is false and its folds can run side by side).
A fine-tuned network carries state from fold to fold and runs as one task; its folds cannot
be parallelized, only its run next to the other policies'.

Each configuration runs ``--repeat`` times; the table gives the median wall time and its
ratio to the serial run, and checks that the parallel weights equal the serial ones.

Usage: ``python benchmarks/walkforward.py [--jobs 2] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from neuralfolio.backtest import walk_forward
from neuralfolio.data import load_prices
from neuralfolio.features import FeatureSpec
from neuralfolio.nn import NeuralAllocator, TrainConfig
from neuralfolio.optimize import min_variance_labels
from neuralfolio.policies import MinVariancePolicy, NeuralPolicy


def policies() -> dict:
    net = NeuralAllocator(FeatureSpec("risk", 126),
                          TrainConfig(hidden=(64, 64), max_epochs=30, patience=30, seed=0),
                          augment=4000)
    return {"optimizer_daily": MinVariancePolicy(126, "daily"),
            "network_refit": NeuralPolicy(net, fine_tune=False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    prices = load_prices("gfc")
    labels = min_variance_labels(prices, window=126).weights
    kw = {"test_start": "2008-01-01", "retrain_every": 63}
    rows = []
    reference = None
    for label, n_jobs, backend in (("serial (one process)", 1, None),
                                   (f"loky, {args.jobs} workers", args.jobs, "loky"),
                                   (f"threading, {args.jobs} workers", args.jobs,
                                    "threading")):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            run = walk_forward(prices, policies(), labels, n_jobs=n_jobs, backend=backend, **kw)
            times.append(time.perf_counter() - t0)
        w = np.hstack([run.weights[n].to_numpy() for n in run.policies])
        if reference is None:
            reference = w
        rows.append((label, statistics.median(times), float(np.abs(w - reference).max()),
                     len(run.retrain_dates)))

    base = rows[0][1]
    print(f"walk-forward on gfc, {rows[0][3]} folds, 2 policies; median of {args.repeat} runs")
    print(f"{'configuration':<26}{'wall s':>9}{'ratio':>8}{'max |dw| vs serial':>22}")
    for label, seconds, gap, _ in rows:
        print(f"{label:<26}{seconds:>9.1f}{seconds / base:>8.2f}{gap:>22.1e}")


if __name__ == "__main__":
    main()
