"""Glass-box neural networks in NumPy, small enough to read in one sitting.

The first chapter of the course builds a logistic regressor and a two-layer tanh/sigmoid
network by hand: forward pass, binary cross-entropy, backpropagation by the chain rule and
gradient descent. This package does the same, for any depth, with the chapter's notation
(``z``, ``A``, ``dz``, ``dW``, ``db``), and reproduces the chapter's printed numbers.

* :mod:`._activations` - sigmoid, tanh, relu, softmax, linear and their derivatives;
* :mod:`._losses` - binary/categorical cross-entropy and MSE with their gradients;
* :mod:`._network` - :class:`Dense`, :class:`Network`, :class:`LogisticRegressor`,
  training by (mini-batch) gradient descent and a Keras-style :func:`summary`;
* :mod:`._gradcheck` - finite-difference check of the backpropagated gradients;
* :mod:`._experiments` - the chapter's toy regressor, two moons and model summary.

Only NumPy is imported here; the experiments load scikit-learn and matplotlib when run.

Examples
--------
>>> from neuralfolio.scratch import Network
>>> net = Network((2, 3, 1), ("tanh", "sigmoid"), loss="bce", seed=0)
>>> net.n_params
13
"""

from neuralfolio.scratch._activations import (
    ACTIVATIONS,
    Activation,
    Identity,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    get_activation,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from neuralfolio.scratch._experiments import (
    TOY_X,
    TOY_Y,
    MoonsFit,
    MoonsReport,
    chapter_network,
    chapter_summary,
    moons_data,
    toy_logistic,
    two_moons,
)
from neuralfolio.scratch._gradcheck import gradient_check, numerical_gradients, relative_error
from neuralfolio.scratch._losses import (
    LOSSES,
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Loss,
    MeanSquaredError,
    get_loss,
)
from neuralfolio.scratch._network import (
    Dense,
    History,
    LogisticRegressor,
    Network,
    summary,
    summary_rows,
)

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "TOY_X",
    "TOY_Y",
    "Activation",
    "BinaryCrossEntropy",
    "CategoricalCrossEntropy",
    "Dense",
    "History",
    "Identity",
    "LogisticRegressor",
    "Loss",
    "MeanSquaredError",
    "MoonsFit",
    "MoonsReport",
    "Network",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "chapter_network",
    "chapter_summary",
    "get_activation",
    "get_loss",
    "gradient_check",
    "moons_data",
    "numerical_gradients",
    "relative_error",
    "relu",
    "sigmoid",
    "softmax",
    "summary",
    "summary_rows",
    "tanh",
    "toy_logistic",
    "two_moons",
]
