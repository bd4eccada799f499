"""Loss functions with their gradients with respect to the prediction.

``y`` holds the targets and ``A`` the network's output (the chapter's ``y_hat``); both have
shape ``(n_samples, n_outputs)``. Each loss returns a mean, so the gradient ``dA`` already
carries the ``1/N`` that the chapter writes into ``dW = 1/N * X.T @ dz``.

When the output activation is the loss's natural partner (sigmoid with binary
cross-entropy, softmax with categorical cross-entropy), the two derivatives cancel into
``dz = (A - y) / N``: :meth:`Loss.fused_dz` returns that directly, which is both cheaper
and exact where ``A`` is saturated at 0 or 1.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from neuralfolio.errors import ConfigError, DataError

__all__ = [
    "LOSSES",
    "BinaryCrossEntropy",
    "CategoricalCrossEntropy",
    "Loss",
    "MeanSquaredError",
    "get_loss",
]

# Predictions are kept this far from 0 and 1 inside the logarithms.
_TINY = 1e-15


class Loss:
    """Base class: ``value(y, A)``, ``gradient(y, A)`` and ``check_targets(y)``.

    Attributes
    ----------
    name : str
        Key in :data:`LOSSES`.
    partner : str or None
        Name of the output activation whose derivative cancels with this loss's, so that
        :meth:`fused_dz` applies.
    """

    name: ClassVar[str] = ""
    partner: ClassVar[str | None] = None

    def value(self, y: np.ndarray, A: np.ndarray) -> float:
        """Mean loss; ``y`` and ``A`` of shape (n_samples, n_outputs)."""
        raise NotImplementedError

    def gradient(self, y: np.ndarray, A: np.ndarray) -> np.ndarray:
        """``dA``, the derivative of :meth:`value` with respect to ``A``; shape as ``A``."""
        raise NotImplementedError

    def fused_dz(self, y: np.ndarray, A: np.ndarray) -> np.ndarray:
        """``dz`` of the output layer when its activation is :attr:`partner`; shape as ``A``."""
        raise ConfigError(f"{self.name} has no fused gradient; use gradient() and the "
                          "activation's backward().")

    def check_targets(self, y: np.ndarray) -> None:
        """Raise :class:`DataError` when the targets do not suit the loss."""
        if not np.all(np.isfinite(y)):
            raise DataError("y has non-finite values (NaN or inf); drop or fill those rows.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BinaryCrossEntropy(Loss):
    """``-1/(N k) * sum(y log A + (1 - y) log(1 - A))``, the mean over every entry.

    With one output (``k = 1``) this is the chapter's ``-1/N * sum(...)``. Targets must be
    0 or 1. Partner activation: sigmoid, with ``dz = (A - y) / (N k)``.
    """

    name = "binary_crossentropy"
    partner = "sigmoid"

    def value(self, y, A):
        A = np.clip(A, _TINY, 1.0 - _TINY)
        return float(-np.sum(y * np.log(A) + (1.0 - y) * np.log(1.0 - A)) / y.size)

    def gradient(self, y, A):
        A = np.clip(A, _TINY, 1.0 - _TINY)
        return (A - y) / (A * (1.0 - A)) / y.size

    def fused_dz(self, y, A):
        return (A - y) / y.size

    def check_targets(self, y):
        super().check_targets(y)
        bad = ~np.isin(y, (0.0, 1.0))
        if np.any(bad):
            values = np.unique(y[bad])[:5].tolist()
            raise DataError(f"binary cross-entropy needs labels 0 or 1, got {values}; "
                            "map the two classes to 0 and 1 (for more classes use "
                            "loss='categorical_crossentropy' with one-hot targets).")


class MeanSquaredError(Loss):
    """``1/(N k) * sum((A - y)**2)``, the mean over every entry; usually with a linear output."""

    name = "mse"

    def value(self, y, A):
        return float(np.sum((A - y) ** 2) / y.size)

    def gradient(self, y, A):
        return 2.0 * (A - y) / y.size


class CategoricalCrossEntropy(Loss):
    """``-1/N * sum(y log A)``: summed over the classes, averaged over the samples.

    Each target row must be a probability vector (one-hot for hard labels). Partner
    activation: softmax, with ``dz = (A - y) / N``.
    """

    name = "categorical_crossentropy"
    partner = "softmax"

    def value(self, y, A):
        return float(-np.sum(y * np.log(np.clip(A, _TINY, None))) / y.shape[0])

    def gradient(self, y, A):
        return -y / np.clip(A, _TINY, None) / y.shape[0]

    def fused_dz(self, y, A):
        return (A - y) / y.shape[0]

    def check_targets(self, y):
        super().check_targets(y)
        if np.any(y < 0) or not np.allclose(y.sum(axis=1), 1.0):
            raise DataError("categorical cross-entropy needs one-hot target rows (non-negative, "
                            "summing to 1); one-hot encode the class labels, e.g. "
                            "np.eye(n_classes)[labels].")


LOSSES: dict[str, type[Loss]] = {
    cls.name: cls for cls in (BinaryCrossEntropy, MeanSquaredError, CategoricalCrossEntropy)
}
_ALIASES = {"bce": "binary_crossentropy", "cce": "categorical_crossentropy",
            "crossentropy": "categorical_crossentropy", "mean_squared_error": "mse"}


def get_loss(name: str | Loss) -> Loss:
    """A loss object from its name (``"bce"``, ``"mse"``, ``"cce"`` or the long names).

    Raises
    ------
    ConfigError
        The name is unknown.
    """
    if isinstance(name, Loss):
        return name
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))} "
                          f"(or the short names {', '.join(sorted(_ALIASES))}).")
    return LOSSES[key]()
