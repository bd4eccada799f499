"""One weight update from prices: network vs the optimizer it replaces, in the same run.

Measures, on the bundled sp500 data (20 assets, 126-day windows), the median time of
  * the stepped updates (tick -> weights) of the network policies and of the optimizer:
    the decision path of the walk-forward and the service (rolling moments updated in
    O(n^2), then the NumPy forward pass, or a warm-started OSQP solve on the rolling
    Ledoit-Wolf covariance),
  * the neural policies' update from scratch (Ledoit-Wolf risk inputs + NumPy forward pass), for the
    attention network (the run default) and the dense network,
  * the same updates through the PyTorch modules instead,
  * the optimizer re-solved by neuralfolio's warm-started OSQP problem,
  * the optimizer re-solved by skfolio's MeanRisk (what a user would write first),
and the Ledoit-Wolf estimate alone (NumPy vs scikit-learn). Then the same attention network,
which does not depend on the number of assets, allocates a synthetic universe of
``--large`` assets against the warm OSQP optimizer on that universe: the stepped updates
of both with their p50 and p99 and the network's ratios to the optimizer (at 500 assets the
network's stepped inputs solve the unconstrained weights through Woodbury's identity on the
126-day window instead of a 500 x 500 solve). Prints ratios; the machines are shared and
noisy, so read the ratios, not the absolute times. ``--blas-threads 1`` pins NumPy's BLAS
to one thread (OSQP uses none): on a loaded 2-core machine OpenBLAS's threads can wait on
each other for milliseconds.

Run: .venv/bin/python benchmarks/update.py [--repeats 300] [--large 500] [--blas-threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from skfolio.moments import LedoitWolf
from skfolio.optimization import MeanRisk
from skfolio.prior import EmpiricalPrior
from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf

from neuralfolio.config import DEFAULT_IMITATION
from neuralfolio.data import load_prices, synthetic_prices
from neuralfolio.features import latest_features
from neuralfolio.nn import NeuralAllocator, TrainConfig
from neuralfolio.optimize import min_variance_labels
from neuralfolio.policies import MinVariancePolicy, NeuralPolicy
from neuralfolio.risk import ledoit_wolf


def _median_us(fn, histories) -> float:
    fn(histories[0])
    times = []
    for h in histories:
        t0 = time.perf_counter()
        fn(h)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def _stepped_times(policy, values, start: int, n: int) -> np.ndarray:
    """Times in µs of ``n`` stepped updates (one new price row -> weights)."""
    st = policy.stepper(values[: start + 1])
    st.step(values[start + 1])
    times = []
    for r in range(start + 2, start + 2 + n):
        t0 = time.perf_counter()
        st.step(values[r % len(values)])
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e6


def _stepped_us(policy, values, start: int, n: int) -> float:
    """Median time of ``n`` stepped updates (one new price row -> weights)."""
    return float(np.median(_stepped_times(policy, values, start, n)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--large", type=int, default=100, help="assets of the large universe")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="threads of NumPy's BLAS (default: as the environment sets)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads, user_api="blas")

    prices = load_prices("sp500", end="2012-12-31")
    labels = min_variance_labels(prices, window=126).weights
    train_end = prices.index.get_loc(prices.loc[:"2010-12-31"].index[-1])
    settings = {"attention": DEFAULT_IMITATION, "dense": {"head": "simplex"}}
    models = {
        name: NeuralAllocator("risk", TrainConfig(**{**s, "max_epochs": 2})).fit(
            prices.iloc[: train_end + 1], labels)
        for name, s in settings.items()
    }
    values = prices.to_numpy()
    rows = np.arange(train_end + 1, train_end + 1 + args.repeats) % len(values)
    rows = np.maximum(rows, 127)
    histories = [values[r - 126 : r + 1] for r in rows]
    returns = [h[1:] / h[:-1] - 1 for h in histories]
    optimizer = MinVariancePolicy(126)

    def torch_update(model):
        def update(h):
            x = model._scale(latest_features(h, model.features))
            with torch.inference_mode():
                return model.network_(torch.as_tensor(x[None], dtype=torch.float32))
        return update

    skf = MeanRisk(prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()))
    results = {}
    start = train_end
    for name, model in models.items():
        results[f"{name} network, stepped update (tick -> weights)"] = _stepped_us(
            NeuralPolicy(model), values, start, args.repeats)
    results["optimizer, stepped update (warm OSQP on the rolling covariance)"] = _stepped_us(
        MinVariancePolicy(126), values, start, args.repeats)
    for name, model in models.items():
        results[f"{name} network update (NumPy forward)"] = _median_us(
            NeuralPolicy(model).weights, histories)
        results[f"{name} network update (PyTorch forward)"] = _median_us(
            torch_update(model), histories)
    results["optimizer update (warm OSQP)"] = _median_us(optimizer.weights, histories)
    results["optimizer update (skfolio MeanRisk)"] = _median_us(
        lambda h: skf.fit(h[1:] / h[:-1] - 1), histories[: max(20, args.repeats // 10)])
    lw_np = _median_us(ledoit_wolf, returns)
    lw_sk = _median_us(sk_ledoit_wolf, returns)

    base = results["optimizer update (warm OSQP)"]
    table = Table(title=f"One weight update, sp500 (20 assets), median of {args.repeats}")
    table.add_column("path")
    table.add_column("median µs", justify="right")
    table.add_column("× warm OSQP", justify="right")
    for name, us in results.items():
        table.add_row(name, f"{us:,.0f}", f"{us / base:.1f}")
    table.add_row("Ledoit-Wolf, NumPy", f"{lw_np:,.0f}", "")
    table.add_row("Ledoit-Wolf, scikit-learn", f"{lw_sk:,.0f}", f"({lw_sk / lw_np:.1f}× NumPy)")
    Console(width=120).print(table)

    # The asset-agnostic network on a larger universe it was never trained on.
    big = synthetic_prices(args.large, 126 + args.repeats + 1, seed=3).to_numpy()
    big_histories = [big[r - 126 : r + 1] for r in range(126, 126 + args.repeats)]
    attention = NeuralPolicy(models["attention"])
    steps = max(args.repeats - 2, 1)
    net_t = _stepped_times(attention, big, 126, steps)
    opt_t = _stepped_times(MinVariancePolicy(126), big, 126, steps)
    stepped = {"attention network, stepped update (tick -> weights)": net_t,
               "optimizer, stepped update (warm OSQP on the rolling covariance)": opt_t}
    scratch = {
        "attention network update (NumPy forward)": _median_us(attention.weights, big_histories),
        "optimizer update (warm OSQP)": _median_us(MinVariancePolicy(126).weights,
                                                   big_histories),
    }
    o50, o99 = np.percentile(opt_t, [50, 99])
    threads = "" if args.blas_threads is None else f", BLAS threads {args.blas_threads}"
    table = Table(title=f"One weight update, {args.large} synthetic assets (the 20-asset "
                        f"attention network, untrained on them), {steps} stepped updates"
                        f"{threads}")
    table.add_column("path")
    table.add_column("p50 µs", justify="right")
    table.add_column("p99 µs", justify="right")
    table.add_column("stepped OSQP p50 / p50", justify="right")
    table.add_column("stepped OSQP p99 / p99", justify="right")
    for name, t in stepped.items():
        p50, p99 = np.percentile(t, [50, 99])
        table.add_row(name, f"{p50:,.0f}", f"{p99:,.0f}", f"{o50 / p50:.1f}×",
                      f"{o99 / p99:.1f}×")
    for name, us in scratch.items():
        table.add_row(name, f"{us:,.0f}", "", f"{o50 / us:.2f}×", "")
    Console(width=120).print(table)
    n50, n99 = np.percentile(net_t, [50, 99])
    Console(width=120).print(f"{args.large} assets: the stepped attention network update is "
                    f"{o50 / n50:.1f}× faster than the stepped warm OSQP update at p50 and "
                    f"{o99 / n99:.1f}× at p99 (p99 {n99:,.0f} µs; target <= 1,000 µs, >= 10×).")


if __name__ == "__main__":
    main()
