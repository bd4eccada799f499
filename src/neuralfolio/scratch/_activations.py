"""Activation functions and their derivatives, in the chapter's notation.

A layer computes the linear step ``z = X @ W + b`` and then the activation ``A = g(z)``.
Going backwards, it receives ``dA`` (the loss derivative with respect to ``A``) and needs
``dz`` (the loss derivative with respect to ``z``). For an element-wise activation that is
``dz = dA * g'(z)``; softmax mixes the entries of a row, so its backward step is a
Jacobian-vector product instead.

Every array here has shape ``(n_samples, n_units)``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from neuralfolio.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Identity",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "get_activation",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-z))`` without overflow for large ``|z|``.

    Parameters
    ----------
    z : ndarray, any shape
        Linear step.

    Returns
    -------
    ndarray, same shape as ``z``
        Values in (0, 1).
    """
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])  # z < 0: exp(z) cannot overflow
    out[~pos] = ez / (1.0 + ez)
    return out


def tanh(z: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent, values in (-1, 1); shape as ``z``."""
    return np.tanh(z)


def relu(z: np.ndarray) -> np.ndarray:
    """Rectified linear unit ``max(z, 0)``; shape as ``z``."""
    return np.maximum(z, 0.0)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable because the row maximum is subtracted first.

    Parameters
    ----------
    z : ndarray, shape (..., n_classes)

    Returns
    -------
    ndarray, shape (..., n_classes)
        Non-negative rows that sum to 1 (over the last axis).
    """
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


class Activation:
    """Base class: ``forward(z) -> A`` and ``backward(dA, z, A) -> dz``.

    Element-wise activations only implement :meth:`forward` and :meth:`derivative`
    (``g'(z)``, which may use the cached output ``A``).
    """

    name: ClassVar[str] = ""

    def forward(self, z: np.ndarray) -> np.ndarray:
        """``A = g(z)``; both of shape (n_samples, n_units)."""
        raise NotImplementedError

    def derivative(self, z: np.ndarray, A: np.ndarray) -> np.ndarray:
        """Element-wise ``g'(z)``, shape (n_samples, n_units)."""
        raise NotImplementedError

    def backward(self, dA: np.ndarray, z: np.ndarray, A: np.ndarray) -> np.ndarray:
        """Chain rule through the activation: ``dz = dA * g'(z)``.

        Parameters
        ----------
        dA : ndarray, shape (n_samples, n_units)
            Loss derivative with respect to the activation's output.
        z, A : ndarray, shape (n_samples, n_units)
            The linear step and the output cached by the forward pass.

        Returns
        -------
        ndarray, shape (n_samples, n_units)
            Loss derivative with respect to ``z``.
        """
        return dA * self.derivative(z, A)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Sigmoid(Activation):
    """Sigmoid; ``g'(z) = A (1 - A)``."""

    name = "sigmoid"

    def forward(self, z):
        return sigmoid(z)

    def derivative(self, z, A):
        return A * (1.0 - A)


class Tanh(Activation):
    """Tanh; ``g'(z) = 1 - A**2`` (the chapter's ``tanh_derivative(a1)``)."""

    name = "tanh"

    def forward(self, z):
        return tanh(z)

    def derivative(self, z, A):
        return 1.0 - A**2


class ReLU(Activation):
    """ReLU; ``g'(z)`` is 1 where ``z > 0`` and 0 elsewhere (0 at ``z = 0`` by convention)."""

    name = "relu"

    def forward(self, z):
        return relu(z)

    def derivative(self, z, A):
        return (z > 0).astype(z.dtype)


class Identity(Activation):
    """Linear (no) activation; ``g'(z) = 1``."""

    name = "linear"

    def forward(self, z):
        return z

    def derivative(self, z, A):
        return np.ones_like(z)

    def backward(self, dA, z, A):
        return dA


class Softmax(Activation):
    """Row-wise softmax; backward is the Jacobian-vector product.

    The Jacobian of one row is ``diag(A) - A A^T``, so
    ``dz = A * (dA - sum(dA * A, axis=1))`` without forming the matrix.
    """

    name = "softmax"

    def forward(self, z):
        return softmax(z)

    def derivative(self, z, A):
        raise ConfigError("softmax has no element-wise derivative; use Softmax.backward, "
                          "which applies its Jacobian to dA.")

    def backward(self, dA, z, A):
        return A * (dA - np.sum(dA * A, axis=1, keepdims=True))


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls for cls in (Sigmoid, Tanh, ReLU, Softmax, Identity)
}
_ALIASES = {"identity": "linear", "none": "linear", "logistic": "sigmoid"}


def get_activation(name: str | Activation) -> Activation:
    """An activation object from its name (``"tanh"``) or an existing instance.

    Raises
    ------
    ConfigError
        The name is not one of :data:`ACTIVATIONS` (``"identity"`` is accepted for
        ``"linear"``).
    """
    if isinstance(name, Activation):
        return name
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of "
                          f"{', '.join(sorted(ACTIVATIONS))}.")
    return ACTIVATIONS[key]()
