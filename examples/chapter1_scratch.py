"""The first chapter in NumPy: a logistic regressor, a two-layer network, under/overfitting.

1. the logistic regressor on the four-sample toy data, losses as the chapter prints them;
2. the summary table of the 2-3-1 tanh/sigmoid network (13 parameters);
3. two moons with 1, 3 and 500 hidden units: decision boundaries and loss curves as PNGs.

Run: .venv/bin/python examples/chapter1_scratch.py [OUT_DIR]   (default runs/scratch)
"""

import sys
from pathlib import Path

from neuralfolio.scratch import chapter_summary, toy_logistic, two_moons

out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/scratch")

# 1. Logistic regressor: z = X @ W + b, A = sigmoid(z), dz = A - y, W -= alpha * dW.
print("Toy logistic regressor (binary cross-entropy before each update):")
for epoch, loss in enumerate(toy_logistic(epochs=20, alpha=1.0, seed=1)):
    print(f"  Epoch: {epoch:2d} Loss: {format(loss, '.12g')}")

# 2. The two-layer network the chapter builds in Keras, as a layer table.
print("\n" + chapter_summary())

# 3. Hidden layer of size 1 (too simple), 3 (about right) and 500 (fits the noise).
print(f"\nTwo moons (a few seconds; plots go to {out_dir}):")
report = two_moons((1, 3, 500), out_dir=out_dir)
print(f"  {'hidden':>6} {'train acc':>10} {'held-out':>9} {'precision':>10} {'recall':>7}")
for h, fit in report.fits.items():
    print(f"  {h:>6} {fit.train_accuracy:>10.3f} {fit.test_accuracy:>9.3f} "
          f"{fit.precision:>10.3f} {fit.recall:>7.3f}   {fit.plot}")
print(f"  loss curves: {report.loss_plot}")
