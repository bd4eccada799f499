"""One weight update through the NumPy runtime vs the PyTorch module, and batched throughput.

For each network and universe size, a model is fitted for one epoch on synthetic prices
(timing does not depend on the trained values), exported with
``NeuralAllocator.to_numpy_runtime()``, and both evaluators get the same raw features:

* per call: one row, ``runtime.predict_features(x)`` (float64 NumPy) against the PyTorch
  module (``torch.no_grad()``, eval mode, float32, the input scaled and converted as
  ``NeuralAllocator`` does), median over ``--calls`` calls after a warm-up;
* batched: ``--batch`` rows at once (16 for attention at 500 assets, whose scores are
  (batch, heads, 500, 500)), rows per second for each.

Networks: the course's dense network (today's prices in, weights out; hidden 64-64,
softmax) and the default attention network (risk inputs from a 60-day window, d_model 32,
simplex head), each at 20 and 500 assets. The attention network is asset-agnostic: the
same architecture runs at any size. Everything runs on one thread (``torch.set_num_threads``
and the BLAS thread count fixed to 1), so the ratios compare the evaluators, not the cores.

Usage: ``python benchmarks/inference.py [--calls 2000] [--batch 1024]``
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch

from neuralfolio.data import synthetic_prices
from neuralfolio.features import FeatureSpec, make_features
from neuralfolio.nn import NeuralAllocator, TrainConfig

NETWORKS = {
    "dense (course, prices)": (FeatureSpec("prices", 1), {"hidden": (64, 64)}),
    "attention (risk, default)": (FeatureSpec("risk", 60), {
        "model": "attention", "model_options": {"d_model": 32}, "head": "simplex"}),
}


def _median_seconds(fn, x, calls: int) -> float:
    for _ in range(20):
        fn(x)
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn(x)
        times[i] = time.perf_counter() - t0
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"{'network':<28}{'assets':>7}{'torch µs':>10}{'NumPy µs':>10}{'ratio':>8}"
          f"{'torch rows/s':>14}{'NumPy rows/s':>14}{'ratio':>8}{'max |dw|':>10}")
    for name, (spec, settings) in NETWORKS.items():
        attention = settings.get("model") == "attention"
        model = None
        for n in (20, 500):
            if model is None or not attention:
                # The attention network is asset-agnostic: fitted once on 20 assets, it runs
                # on 500. The dense network has one input and one output per asset.
                prices = synthetic_prices(n, 300, seed=0)
                cfg = TrainConfig(loss="variance", horizon=5, max_epochs=1, batch_size=64,
                                  **settings)
                model = NeuralAllocator(spec, cfg).fit(prices)
                rt = model.to_numpy_runtime()
                net = model.network_.eval()
            raw = make_features(synthetic_prices(n, spec.lookback + 40, seed=1), spec).to_numpy()
            # 500 assets of attention: (batch, 500, 500) per head; keep the batch small.
            batch = min(args.batch, 16) if attention and n > 100 else args.batch
            rows = raw[np.arange(batch) % len(raw)]

            def run_torch(x, net=net, model=model):
                with torch.no_grad():
                    return net(torch.tensor(model._scale(x), dtype=torch.float32)).numpy()

            one = raw[-1:]
            t_torch = _median_seconds(run_torch, one, args.calls)
            t_numpy = _median_seconds(rt.predict_features, one, args.calls)
            reps = max(3, args.calls // 200)
            b_torch = _median_seconds(run_torch, rows, reps)
            b_numpy = _median_seconds(rt.predict_features, rows, reps)
            gap = float(np.abs(run_torch(rows) - rt.predict_features(rows)).max())
            print(f"{name:<28}{n:>7}{t_torch * 1e6:>10.0f}{t_numpy * 1e6:>10.0f}"
                  f"{t_numpy / t_torch:>8.2f}{batch / b_torch:>14,.0f}"
                  f"{batch / b_numpy:>14,.0f}{b_torch / b_numpy:>8.2f}{gap:>10.1e}",
                  flush=True)
    print("ratio: NumPy time / torch time per call (below 1: NumPy faster); batched: NumPy "
          "rows/s over torch rows/s (above 1: NumPy faster). max |dw|: float32 torch vs "
          "float64 NumPy.")


if __name__ == "__main__":
    main()
