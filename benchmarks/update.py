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
``--large`` assets against the warm OSQP optimizer on that universe. Prints ratios; the
machines are shared and noisy, so read the ratios, not the absolute times.

Run: .venv/bin/python benchmarks/update.py [--repeats 300]
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


def _stepped_us(policy, values, start: int, n: int) -> float:
    """Median time of ``n`` stepped updates (one new price row -> weights)."""
    st = policy.stepper(values[: start + 1])
    st.step(values[start + 1])
    times = []
    for r in range(start + 2, start + 2 + n):
        t0 = time.perf_counter()
        st.step(values[r % len(values)])
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--large", type=int, default=100, help="assets of the large universe")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)

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
    Console().print(table)

    # The asset-agnostic network on a larger universe it was never trained on.
    big = synthetic_prices(args.large, 126 + args.repeats + 1, seed=3).to_numpy()
    big_histories = [big[r - 126 : r + 1] for r in range(126, 126 + args.repeats)]
    attention = NeuralPolicy(models["attention"])
    large = {
        "attention network, stepped update": _stepped_us(attention, big, 126, args.repeats - 2),
        "optimizer, stepped update (warm OSQP)": _stepped_us(MinVariancePolicy(126), big, 126,
                                                             args.repeats - 2),
        "attention network update (NumPy forward)": _median_us(attention.weights, big_histories),
        "optimizer update (warm OSQP)": _median_us(MinVariancePolicy(126).weights,
                                                   big_histories),
    }
    base = large["optimizer update (warm OSQP)"]
    table = Table(title=f"One weight update, {args.large} synthetic assets (the 20-asset "
                        f"attention network, untrained on them), median of {args.repeats}")
    table.add_column("path")
    table.add_column("median µs", justify="right")
    table.add_column("× warm OSQP", justify="right")
    for name, us in large.items():
        table.add_row(name, f"{us:,.0f}", f"{us / base:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
