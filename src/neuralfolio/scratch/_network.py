"""Dense layers, a network of any depth, the logistic regressor, training and a summary table.

Notation follows the chapter: for each layer the linear step is ``z = X @ W + b`` and the
activation ``A = g(z)``; going backwards ``dz``, ``dW``, ``db`` are the loss derivatives with
respect to ``z``, ``W`` and ``b``. Samples are rows, so

* ``X`` has shape (N, n_in), ``W`` (n_in, n_out), ``b`` (1, n_out), ``z`` and ``A`` (N, n_out);
* ``dW = X.T @ dz``, ``db = sum(dz, axis=0)``, and the layer below receives ``dz @ W.T``.

The loss is a mean over the samples, so its gradient already carries the chapter's ``1/N``.
Every array is float64. Backpropagation is written by hand: no autograd anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from neuralfolio.errors import ConfigError, DataError
from neuralfolio.scratch._activations import Activation, get_activation
from neuralfolio.scratch._losses import Loss, get_loss

__all__ = ["Dense", "History", "LogisticRegressor", "Network", "summary", "summary_rows"]


def _uniform_weights(rng: np.random.Generator, shape: tuple[int, int], scale: float):
    """The chapter's ``2*random(shape) - 1`` (uniform on [-1, 1)) times ``scale``."""
    return scale * (2.0 * rng.random(shape) - 1.0)


class Dense:
    """Fully connected layer followed by an activation: ``A = g(X @ W + b)``.

    Parameters
    ----------
    n_in, n_out : int
        Number of inputs and of units.
    activation : str or Activation
        ``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"softmax"`` or ``"linear"``.
    rng : numpy.random.Generator, optional
        Source of the initial weights, uniform on ``[-init_scale, init_scale)``; the bias
        starts at zero. Without it the weights start at zero.
    init_scale : float
        Half-width of the initial weights' range.

    Attributes
    ----------
    W : ndarray, shape (n_in, n_out)
    b : ndarray, shape (1, n_out)
    dW, db : ndarray, shapes as ``W`` and ``b``
        Gradients stored by the last :meth:`backward`.
    """

    def __init__(self, n_in: int, n_out: int, activation: str | Activation = "linear", *,
                 rng: np.random.Generator | None = None, init_scale: float = 1.0) -> None:
        self.activation = get_activation(activation)
        if rng is None:
            self.W = np.zeros((n_in, n_out))
        else:
            self.W = _uniform_weights(rng, (n_in, n_out), init_scale)
        self.b = np.zeros((1, n_out))
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self._X = self._z = self._A = None

    @property
    def n_in(self) -> int:
        return self.W.shape[0]

    @property
    def n_out(self) -> int:
        return self.W.shape[1]

    @property
    def n_params(self) -> int:
        """Number of weights and biases, ``(n_in + 1) * n_out``."""
        return self.W.size + self.b.size

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Linear step then activation; caches ``X``, ``z`` and ``A`` for :meth:`backward`.

        Parameters
        ----------
        X : ndarray, shape (N, n_in)

        Returns
        -------
        A : ndarray, shape (N, n_out)
        """
        z = X @ self.W + self.b
        A = self.activation.forward(z)
        self._X, self._z, self._A = X, z, A
        return A

    def backward(self, dA: np.ndarray) -> np.ndarray:
        """Backward pass from ``dA`` (shape (N, n_out)); returns ``dX`` (shape (N, n_in))."""
        dz = self.activation.backward(dA, self._z, self._A)
        return self.backward_from_dz(dz)

    def backward_from_dz(self, dz: np.ndarray) -> np.ndarray:
        """Store ``dW`` and ``db`` from ``dz`` (shape (N, n_out)); return ``dX`` (N, n_in)."""
        if self._X is None:
            raise ConfigError("backward() called before forward(); run a forward pass first.")
        self.dW = self._X.T @ dz
        self.db = np.sum(dz, axis=0, keepdims=True)
        return dz @ self.W.T

    @property
    def output(self) -> np.ndarray | None:
        """``A`` of the last forward pass, shape (N, n_out)."""
        return self._A

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation.name!r})"


@dataclass
class History:
    """What :meth:`Network.fit` records, one entry per epoch.

    Attributes
    ----------
    loss : list of float
        Training loss (L2 term included) computed in each batch's forward pass, *before* that
        batch's update, averaged over the epoch's batches weighted by their size. With full
        batches this is the loss before each epoch's single update, as the chapter prints.
    accuracy : list of float
        Training accuracy from the same forward passes (classification losses only).
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.loss)

    def as_dict(self) -> dict[str, list[float]]:
        return {"loss": list(self.loss), "accuracy": list(self.accuracy)}


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}.")
    return int(value)


class Network:
    """Stack of :class:`Dense` layers trained by (mini-batch) gradient descent.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths from the input to the output, e.g. ``(2, 3, 1)`` for the chapter's
        network with 2 inputs, 3 hidden units and 1 output.
    activations : sequence of str
        One activation per layer (``len(sizes) - 1`` of them), e.g. ``("tanh", "sigmoid")``.
    loss : str or Loss
        ``"binary_crossentropy"`` (``"bce"``, needs a sigmoid output), ``"mse"`` or
        ``"categorical_crossentropy"`` (``"cce"``, needs a softmax output).
    l2 : float
        L2 penalty: the loss gains ``l2 / (2N) * sum ||W||^2`` over the weight matrices (not
        the biases), so each ``dW`` gains ``l2 / N * W``. ``N`` is the number of samples in
        the batch.
    seed : int or None
        Seed of the initial weights (``numpy.random.default_rng``).
    init_scale : float or sequence of float
        Initial weights are uniform on ``[-s, s)``, the chapter's ``2*random - 1`` for
        ``s = 1``; one value for all layers or one per layer. Biases start at zero.
    fused : bool
        Use the cancelled output gradient ``dz = (A - y) / N`` for sigmoid with binary
        cross-entropy and softmax with categorical cross-entropy (as the chapter does).
        ``False`` always chains the loss gradient through the activation's derivative.
    """

    def __init__(self, sizes: Sequence[int], activations: Sequence[str | Activation],
                 loss: str | Loss = "binary_crossentropy", *, l2: float = 0.0,
                 seed: int | None = 0, init_scale: float | Sequence[float] = 1.0,
                 fused: bool = True) -> None:
        sizes = [_positive_int(s, "each layer size") for s in sizes]
        if len(sizes) < 2:
            raise ConfigError(f"sizes {sizes} needs at least an input and an output size, "
                              "e.g. (2, 3, 1).")
        if isinstance(activations, str | Activation):
            activations = [activations]
        if len(activations) != len(sizes) - 1:
            raise ConfigError(f"{len(sizes) - 1} layers (sizes {sizes}) need "
                              f"{len(sizes) - 1} activations, got {len(activations)}: "
                              f"{list(activations)}; give one per layer.")
        scales = self._scales(init_scale, len(sizes) - 1)
        if not (np.isfinite(l2) and l2 >= 0):
            raise ConfigError(f"l2 must be a finite number >= 0, got {l2!r}.")
        rng = np.random.default_rng(seed)
        self.layers = [Dense(n_in, n_out, act, rng=rng, init_scale=s)
                       for n_in, n_out, act, s in zip(sizes[:-1], sizes[1:], activations,
                                                      scales, strict=True)]
        self.loss_fn = get_loss(loss)
        self.l2 = float(l2)
        self.fused = bool(fused)
        self.history: History | None = None
        self._check_pairing()

    @staticmethod
    def _scales(init_scale, n_layers: int) -> list[float]:
        scales = [init_scale] * n_layers if np.isscalar(init_scale) else list(init_scale)
        if len(scales) != n_layers or not all(np.isfinite(s) and s >= 0 for s in scales):
            raise ConfigError(f"init_scale must be one number >= 0 or one per layer "
                              f"({n_layers}), got {init_scale!r}.")
        return [float(s) for s in scales]

    def _check_pairing(self) -> None:
        out = self.layers[-1].activation.name
        need = {"binary_crossentropy": "sigmoid", "categorical_crossentropy": "softmax"}
        want = need.get(self.loss_fn.name)
        if want is not None and out != want:
            raise ConfigError(f"{self.loss_fn.name} needs a {want} output layer, got {out}; "
                              f"make the last activation {want!r}.")

    # ------------------------------------------------------------------ shapes and params
    @property
    def sizes(self) -> list[int]:
        return [self.layers[0].n_in] + [layer.n_out for layer in self.layers]

    @property
    def input_dim(self) -> int:
        return self.layers[0].n_in

    @property
    def output_dim(self) -> int:
        return self.layers[-1].n_out

    @property
    def params(self) -> list[np.ndarray]:
        """The live parameter arrays ``[W1, b1, W2, b2, ...]`` (edits change the network)."""
        return [p for layer in self.layers for p in (layer.W, layer.b)]

    @property
    def grads(self) -> list[np.ndarray]:
        """Gradients of the last :meth:`backward`, ``[dW1, db1, dW2, db2, ...]``."""
        return [g for layer in self.layers for g in (layer.dW, layer.db)]

    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    def get_params(self) -> list[np.ndarray]:
        """Copies of ``[W1, b1, W2, b2, ...]``; shapes (n_in, n_out) and (1, n_out)."""
        return [p.copy() for p in self.params]

    def set_params(self, params: Sequence[np.ndarray]) -> None:
        """Overwrite the parameters in place from arrays shaped like :meth:`get_params`.

        Raises
        ------
        ConfigError
            Wrong number of arrays or a wrong shape.
        """
        own = self.params
        if len(params) != len(own):
            raise ConfigError(f"set_params needs {len(own)} arrays [W1, b1, ...], "
                              f"got {len(params)}.")
        new = [np.asarray(p, dtype=np.float64) for p in params]
        for i, (p, q) in enumerate(zip(own, new, strict=True)):
            if q.shape != p.shape and q.size == p.size and q.ndim <= 1:
                q = q.reshape(p.shape)  # a bias given as shape (n_out,)
            if q.shape != p.shape:
                kind = "W" if i % 2 == 0 else "b"
                raise ConfigError(f"parameter {i} ({kind}{i // 2 + 1}) must have shape "
                                  f"{p.shape}, got {q.shape}.")
            new[i] = q
        for p, q in zip(own, new, strict=True):
            p[...] = q

    # ------------------------------------------------------------------ data checks
    def _check_X(self, X) -> np.ndarray:
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("X must be a numeric array of shape (n_samples, n_features).") \
                from None
        if X.ndim != 2:
            raise DataError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}; "
                            "reshape one sample with X.reshape(1, -1).")
        if X.shape[1] != self.input_dim:
            raise DataError(f"X has {X.shape[1]} features but the network's input size is "
                            f"{self.input_dim}; pass the same columns it was built for.")
        if X.shape[0] == 0:
            raise DataError("X has no rows; pass at least one sample.")
        if not np.all(np.isfinite(X)):
            rows = np.flatnonzero(~np.all(np.isfinite(X), axis=1))
            raise DataError(f"X has non-finite values (NaN or inf) in rows "
                            f"{rows[:5].tolist()}; drop or impute them first.")
        return X

    def _check_y(self, y, n_samples: int) -> np.ndarray:
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("y must be a numeric array.") from None
        if y.ndim == 1 and self.output_dim == 1:
            y = y.reshape(-1, 1)
        elif y.ndim == 1 and self.loss_fn.name == "categorical_crossentropy":
            y = self._one_hot(y)
        if y.ndim != 2 or y.shape != (n_samples, self.output_dim):
            raise DataError(f"y has shape {y.shape} but X has {n_samples} rows and the "
                            f"network has {self.output_dim} output(s); y must have shape "
                            f"({n_samples}, {self.output_dim}).")
        self.loss_fn.check_targets(y)
        return y

    def _one_hot(self, labels: np.ndarray) -> np.ndarray:
        k = self.output_dim
        if np.any(labels != np.round(labels)) or np.any((labels < 0) | (labels >= k)):
            raise DataError(f"class labels must be integers 0..{k - 1} for {k} outputs.")
        return np.eye(k)[labels.astype(int)]

    # ------------------------------------------------------------------ forward / backward
    def _forward(self, X: np.ndarray) -> np.ndarray:
        A = X
        for layer in self.layers:
            A = layer.forward(A)
        return A

    def forward(self, X) -> np.ndarray:
        """Output ``A`` of the last layer, shape (N, output_dim), for ``X`` of shape (N, d)."""
        return self._forward(self._check_X(X))

    predict_proba = forward

    def predict(self, X) -> np.ndarray:
        """Class labels, shape (N,): ``A >= 0.5`` for one output, else the argmax per row."""
        A = self.forward(X)
        if A.shape[1] == 1:
            return (A[:, 0] >= 0.5).astype(int)
        return np.argmax(A, axis=1)

    def _penalty(self, n_samples: int) -> float:
        if self.l2 == 0.0:
            return 0.0
        squares = sum(float(np.sum(layer.W**2)) for layer in self.layers)
        return self.l2 / (2.0 * n_samples) * squares

    def _loss_value(self, y: np.ndarray, A: np.ndarray) -> float:
        return self.loss_fn.value(y, A) + self._penalty(y.shape[0])

    def _backward(self, y: np.ndarray) -> None:
        out = self.layers[-1]
        A = out.output
        if self.fused and self.loss_fn.partner == out.activation.name:
            # The chapter's dz = A - y (divided by N, since our loss is a mean).
            d = out.backward_from_dz(self.loss_fn.fused_dz(y, A))
        else:
            d = out.backward(self.loss_fn.gradient(y, A))
        for layer in reversed(self.layers[:-1]):
            d = layer.backward(d)
        if self.l2:
            for layer in self.layers:
                layer.dW = layer.dW + self.l2 / y.shape[0] * layer.W

    def loss(self, X, y) -> float:
        """Mean loss on ``(X, y)`` plus the L2 term; ``X`` (N, d), ``y`` (N, k) or (N,)."""
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        return self._loss_value(y, self._forward(X))

    def loss_and_gradients(self, X, y) -> tuple[float, list[np.ndarray]]:
        """Forward and backward pass: the loss and copies of ``[dW1, db1, dW2, db2, ...]``."""
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        value = self._loss_value(y, self._forward(X))
        self._backward(y)
        return value, [g.copy() for g in self.grads]

    def accuracy(self, X, y) -> float:
        """Share of correctly classified samples (sigmoid: ``A >= 0.5``; softmax: argmax)."""
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        return self._accuracy(y, self._forward(X))

    @staticmethod
    def _accuracy(y: np.ndarray, A: np.ndarray) -> float:
        if A.shape[1] == 1:
            return float(np.mean((A >= 0.5) == (y >= 0.5)))
        return float(np.mean(np.argmax(A, axis=1) == np.argmax(y, axis=1)))

    # ------------------------------------------------------------------ training
    def step(self, alpha: float) -> None:
        """Gradient-descent update of every parameter: ``p -= alpha * dp``."""
        for layer in self.layers:
            layer.W -= alpha * layer.dW
            layer.b -= alpha * layer.db

    def fit(self, X, y, *, epochs: int = 100, alpha: float = 0.1,
            batch_size: int | None = None, seed: int | None = 0,
            history: History | None = None) -> History:
        """Train by gradient descent.

        Parameters
        ----------
        X : array_like, shape (N, input_dim)
        y : array_like, shape (N, output_dim) or (N,)
            0/1 labels for binary cross-entropy; one-hot rows or integer labels for
            categorical cross-entropy; any finite numbers for MSE.
        epochs : int
            Passes over the data.
        alpha : float
            Learning rate.
        batch_size : int or None
            ``None`` (or ``>= N``): full batch, one update per epoch, rows in their given
            order. Otherwise the rows are shuffled every epoch and split into batches of
            this size (the last one may be smaller).
        seed : int or None
            Seed of the shuffling (unused with full batches).
        history : History, optional
            Appended to, to continue an earlier run's record.

        Returns
        -------
        History
            Loss (and accuracy, for classification) per epoch; also kept as
            ``self.history``.
        """
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        epochs = _positive_int(epochs, "epochs")
        if not (np.isfinite(alpha) and alpha > 0):
            raise ConfigError(f"alpha (learning rate) must be a finite number > 0, "
                              f"got {alpha!r}.")
        n = X.shape[0]
        size = n if batch_size is None else min(_positive_int(batch_size, "batch_size"), n)
        rng = np.random.default_rng(seed)
        track = self.loss_fn.name != "mse"
        history = History() if history is None else history
        for _ in range(epochs):
            order = np.arange(n) if size == n else rng.permutation(n)
            total = correct = 0.0
            for start in range(0, n, size):
                rows = order[start:start + size]
                Xb, yb = (X, y) if size == n else (X[rows], y[rows])
                A = self._forward(Xb)            # forward pass
                total += self._loss_value(yb, A) * len(rows)
                if track:
                    correct += self._accuracy(yb, A) * len(rows)
                self._backward(yb)               # dz, dW, db for every layer
                self.step(alpha)                 # W -= alpha * dW; b -= alpha * db
            history.loss.append(total / n)
            if track:
                history.accuracy.append(correct / n)
        self.history = history
        return history

    def summary(self, input_dim: int | None = None) -> str:
        """Keras-style table of the layers; see :func:`summary`."""
        return summary(self, input_dim)

    def __repr__(self) -> str:
        acts = [layer.activation.name for layer in self.layers]
        return (f"{type(self).__name__}(sizes={self.sizes}, activations={acts}, "
                f"loss={self.loss_fn.name!r}, l2={self.l2})")


class LogisticRegressor(Network):
    """One dense layer with a sigmoid output and binary cross-entropy: ``A = sigmoid(X @ W + b)``.

    Parameters
    ----------
    n_features : int
        Number of inputs (columns of ``X``).
    l2, seed, init_scale
        As for :class:`Network`.
    """

    def __init__(self, n_features: int, *, l2: float = 0.0, seed: int | None = 0,
                 init_scale: float = 1.0) -> None:
        super().__init__((n_features, 1), ("sigmoid",), "binary_crossentropy", l2=l2,
                         seed=seed, init_scale=init_scale)

    @classmethod
    def from_weights(cls, W, b=0.0, *, l2: float = 0.0) -> LogisticRegressor:
        """A regressor with given weights ``W`` (shape (d, 1) or (d,)) and bias ``b``."""
        W = np.asarray(W, dtype=np.float64).reshape(-1, 1)
        model = cls(W.shape[0], l2=l2, seed=None)
        model.set_params([W, np.full((1, 1), float(np.asarray(b).reshape(-1)[0]))])
        return model

    @property
    def W(self) -> np.ndarray:
        """Weights, shape (n_features, 1)."""
        return self.layers[0].W

    @property
    def b(self) -> np.ndarray:
        """Bias, shape (1, 1)."""
        return self.layers[0].b

    def __repr__(self) -> str:
        return f"LogisticRegressor(n_features={self.input_dim}, l2={self.l2})"


# ---------------------------------------------------------------------- summary
def summary_rows(model: Network, input_dim: int | None = None) -> list[dict]:
    """The rows of :func:`summary`: name, type, output shape and parameter count.

    A Dense layer is followed by its own Activation row (0 parameters), as when the
    chapter builds the model from ``Dense`` and ``Activation`` layers; a linear
    activation gets no row.
    """
    if input_dim is not None and input_dim != model.input_dim:
        raise ConfigError(f"input_dim {input_dim} does not match the network's input size "
                          f"{model.input_dim}.")
    rows = []
    for i, layer in enumerate(model.layers, start=1):
        shape = f"(None, {layer.n_out})"
        rows.append({"name": f"dense_{i}", "type": "Dense", "output_shape": shape,
                     "params": layer.n_params})
        if layer.activation.name != "linear":
            rows.append({"name": f"activation_{i}", "type": "Activation",
                         "activation": layer.activation.name, "output_shape": shape,
                         "params": 0})
    return rows


def summary(model: Network, input_dim: int | None = None) -> str:
    """A text table of the layers in the layout of Keras's ``model.summary()``.

    Parameters
    ----------
    model : Network
    input_dim : int, optional
        Checked against the network's input size when given.

    Returns
    -------
    str
        One row per Dense and per Activation layer with its output shape ``(None, k)``
        (``None``: any number of samples) and parameter count, then the totals. For the
        chapter's 2-3-1 tanh/sigmoid network the counts are 9, 0, 4, 0 and 13 in total.
    """
    rows = summary_rows(model, input_dim)
    widths = (29, 26, 10)

    def line(*cells: str) -> str:
        return "".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "_" * sum(widths)
    out = [rule, line("Layer (type)", "Output Shape", "Param #"), "=" * sum(widths)]
    for j, r in enumerate(rows):
        out.append(line(f"{r['name']} ({r['type']})", r["output_shape"], str(r["params"])))
        out.append(rule if j < len(rows) - 1 else "=" * sum(widths))
    total = model.n_params
    out += [f"Total params: {total:,}", f"Trainable params: {total:,}",
            "Non-trainable params: 0", rule]
    return "\n".join(out)
