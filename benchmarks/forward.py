"""One forward pass from risk features to weights: readable NumPy vs compiled plan vs PyTorch.

Measures, in the same run, the time of a single-row forward pass (one weight update without
the feature computation) of
  * the default attention network of a run (d_model=32, 4 heads, 2 layers, simplex head,
    residual prior on the unconstrained weights) on 20 assets,
  * the dense network with a simplex head (hidden 256, 256, prior; its input scaler
    included) on the same 20 assets (230 inputs),
  * the same attention network on 100 and 500 assets (it does not depend on the count),
each through the readable NumPy reference (``attention_forward`` / ``dense_forward``, what
single updates ran before), the compiled plan (``AttentionForward`` / ``DenseForward``,
what ``NumpyAllocator`` and ``predict_latest`` run now) and the PyTorch module (float32,
``inference_mode``, one thread). Inputs are risk features of synthetic prices (126-day
windows); the weights are PyTorch's initialization (score and last layers drawn too): a
forward pass costs the same whatever they are, except that a plan subtracts the row maxima
of the attention scores when its weights could overflow ``exp`` (printed below the table).
Every path runs on one thread. Prints medians and 99th percentiles of the per-call times
and their ratios; the machines are shared and noisy, so read the ratios, not the absolute
times.

Run: .venv/bin/python benchmarks/forward.py [--repeats 300]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from neuralfolio.config import DEFAULT_IMITATION
from neuralfolio.data import synthetic_prices
from neuralfolio.features import FeatureSpec, Standardizer, latest_features
from neuralfolio.nn import TrainConfig
from neuralfolio.nn._models import build_network
from neuralfolio.nn._network import head_spec
from neuralfolio.scratch.runtime import (
    AttentionForward,
    DenseForward,
    attention_forward,
    dense_forward,
)

WINDOW = 126


def _times_us(fn, rows: list[np.ndarray], calls: int) -> np.ndarray:
    """Per-call times of ``fn`` on ``calls`` rows (cycling), after a warm-up."""
    for row in rows[:3]:
        fn(row)
    out = np.empty(calls)
    for i in range(calls):
        row = rows[i % len(rows)]
        t0 = time.perf_counter()
        fn(row)
        out[i] = time.perf_counter() - t0
    return out * 1e6


def _risk_rows(n_assets: int, count: int, seed: int) -> list[np.ndarray]:
    spec = FeatureSpec("risk", WINDOW)
    prices = synthetic_prices(n_assets, WINDOW + count + 1, seed=seed).to_numpy()
    return [latest_features(prices[i : i + WINDOW + 1], spec) for i in range(count)]


def _torch_fn(net: torch.nn.Module, prepare=None):
    def run(x: np.ndarray):
        if prepare is not None:
            x = prepare(x)
        with torch.inference_mode():
            return net(torch.as_tensor(x[None], dtype=torch.float32))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300, help="calls per path")
    parser.add_argument("--rows", type=int, default=40, help="distinct inputs per universe")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)

    spec = FeatureSpec("risk", WINDOW)
    attention = build_network(TrainConfig(**DEFAULT_IMITATION), spec, 0, 20).eval()
    n_inputs = 20 + 20 * 19 // 2 + 20
    dense = build_network(TrainConfig(head="simplex"), spec, n_inputs, 20).eval()
    with torch.no_grad():  # both start at zero with the prior; give them some weights
        torch.nn.init.normal_(attention.score.weight, std=0.1)
        torch.nn.init.normal_(dense.body[-1].weight, std=0.05)

    p, arch, head = attention._numpy_params(), attention.config(), head_spec(attention.head)
    attention_plan = AttentionForward(p, arch, head)
    rows = {n: _risk_rows(n, args.rows if n < 500 else max(5, args.rows // 4), seed=n)
            for n in (20, 100, 500)}
    # The dense network's input scaler, as fit() makes it (prior columns pass through).
    scaler = Standardizer().fit(np.stack(rows[20]), passthrough=20)
    layers, prior = dense.to_numpy(), dense.numpy_prior()
    dense_plan = DenseForward(layers, **prior, scaler=(scaler.mean_, scaler.scale_))

    cases = [
        ("attention", 20, lambda x: attention_forward(p, arch, head, x), attention_plan,
         _torch_fn(attention)),
        ("dense", 20, lambda x: dense_forward(layers, scaler.transform(x), **prior),
         dense_plan, _torch_fn(dense, scaler.transform)),
        ("attention", 100, lambda x: attention_forward(p, arch, head, x), attention_plan,
         _torch_fn(attention)),
        ("attention", 500, lambda x: attention_forward(p, arch, head, x), attention_plan,
         _torch_fn(attention)),
    ]
    table = Table(title=f"Single-row forward pass on one thread: µs per call ({args.repeats} "
                        "calls, fewer for slow paths); speed-up = other time / this time")
    for col in ("network", "n", "path", "calls", "median", "p99", "speed-up vs readable",
                "vs PyTorch"):
        table.add_column(col, justify="left" if col in ("network", "path") else "right")
    with threadpool_limits(1):
        for name, n, readable, plan, module in cases:
            data = rows[n]
            # Budget the slow paths to about as long as the plan's calls take.
            probe = float(np.median(_times_us(readable, data, 5)))
            slow_calls = int(min(args.repeats, max(10, 2e6 / max(probe, 1.0))))
            times = {
                "readable": _times_us(readable, data, slow_calls),
                "plan": _times_us(plan, data, args.repeats),
                "PyTorch": _times_us(module, data, slow_calls),
            }
            base = np.median(times["readable"])
            torch_med = np.median(times["PyTorch"])
            for path, t in times.items():
                med = float(np.median(t))
                table.add_row(name, str(n), path, str(len(t)), f"{med:,.0f}",
                              f"{np.percentile(t, 99):,.0f}", f"{base / med:.1f}×",
                              f"{torch_med / med:.1f}×")
            table.add_section()
    console = Console()
    console.print(table)
    exact = sum(attention_plan._exact_softmax)
    gelu = ", ".join(sorted({layer[-1] for layer in attention_plan._layers}))
    diff_a = max(np.abs(attention_plan(x) - attention_forward(p, arch, head, x)).max()
                 for x in rows[20])
    diff_d = max(np.abs(dense_plan(x) - dense_forward(layers, scaler.transform(x), **prior)
                        ).max() for x in rows[20])
    console.print(f"attention plan: {exact} of {len(attention_plan._exact_softmax)} layers "
                  f"subtract the score maxima; feed-forward GELU on {gelu}. Largest "
                  f"|plan - readable| on these inputs: {diff_a:.1e} (attention), "
                  f"{diff_d:.1e} (dense).")

if __name__ == "__main__":
    main()
