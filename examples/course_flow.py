"""The course's workflow, step by step, on the four-stock crisis preset.

1. asset prices and historically optimal (minimum-variance) weights;
2. a dense network mapping today's prices to weights, trained on those weights;
3. new prices in, weights out;
4. the same with risk inputs, and why they hold up better out of sample.

Run: .venv/bin/python examples/course_flow.py
"""

import numpy as np

from neuralfolio.data import load_prices
from neuralfolio.nn import NeuralAllocator, TrainConfig
from neuralfolio.optimize import min_variance_labels

prices = load_prices("gfc")  # BAC, JPM, GE, HD, 2005-2010
labels = min_variance_labels(prices, window=126).weights
train_prices = prices.loc[:"2007-12-31"]

# The course: Dense hidden layer on the four prices, four outputs, trained on the weights.
course = NeuralAllocator("prices", TrainConfig(hidden=(10,), activation="sigmoid", seed=0))
course.fit(train_prices, labels)

new_prices = prices.loc["2008-09-15"].to_numpy()[None, :]  # the day Lehman failed
print("prices on 2008-09-15:", prices.loc["2008-09-15"].round(2).to_dict())
print("network (prices in): ", course.predict_latest(new_prices).round(3))
print("optimizer:           ", labels.loc["2008-09-15"].to_numpy().round(3))

# Risk inputs: what the optimizer itself sees, in a scale-free form.
risky = NeuralAllocator("risk", TrainConfig(seed=0), augment=5000).fit(train_prices, labels)
history = prices.loc[:"2008-09-15"].to_numpy()
print("network (risk in):   ", risky.predict_latest(history).round(3))

test = labels.loc["2008-01-01":].index
for name, model in (("prices", course), ("risk", risky)):
    w = model.predict(prices).loc[test].to_numpy()
    gap = np.abs(w - labels.loc[test].to_numpy()).sum(axis=1).mean()
    print(f"mean L1 to the optimizer 2008-2010, {name} inputs: {gap:.2f}")
