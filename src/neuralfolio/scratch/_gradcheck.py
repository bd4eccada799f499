"""Finite-difference check of the hand-written backpropagation.

Each parameter entry ``p`` is nudged by ``+eps`` and ``-eps``; the central difference
``(L(p + eps) - L(p - eps)) / (2 eps)`` approximates ``dL/dp`` with an error of order
``eps**2``, and is compared with the gradient from :meth:`Network.loss_and_gradients`.
"""

from __future__ import annotations

import numpy as np

from neuralfolio.errors import ConfigError
from neuralfolio.scratch._network import Network

__all__ = ["gradient_check", "numerical_gradients", "relative_error"]


def numerical_gradients(model: Network, X, y, eps: float = 1e-6) -> list[np.ndarray]:
    """Central-difference gradients of ``model.loss(X, y)`` (L2 term included).

    Parameters
    ----------
    model : Network
        Its parameters are perturbed one entry at a time and restored afterwards.
    X : array_like, shape (N, input_dim)
    y : array_like, shape (N, output_dim) or (N,)
    eps : float
        Step of the finite difference.

    Returns
    -------
    list of ndarray
        ``[dW1, db1, dW2, db2, ...]``, shaped like :meth:`Network.get_params`.
    """
    if not eps > 0:
        raise ConfigError(f"eps must be > 0, got {eps!r}.")
    grads = []
    for p in model.params:
        if p.dtype != np.float64:
            raise ConfigError("gradient checks need float64 parameters.")
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            up = model.loss(X, y)
            p[idx] = old - eps
            down = model.loss(X, y)
            p[idx] = old
            g[idx] = (up - down) / (2.0 * eps)
        grads.append(g)
    return grads


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / (||a|| + ||b||)``, 0 when both are zero."""
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def gradient_check(model: Network, X, y, eps: float = 1e-6) -> float:
    """Largest relative error between backpropagated and finite-difference gradients.

    Parameters
    ----------
    model : Network
    X : array_like, shape (N, input_dim)
    y : array_like, shape (N, output_dim) or (N,)
    eps : float
        Finite-difference step.

    Returns
    -------
    float
        ``max`` over the parameter arrays of :func:`relative_error`; around 1e-9 or less
        for correct gradients in float64.
    """
    _, analytic = model.loss_and_gradients(X, y)
    numeric = numerical_gradients(model, X, y, eps)
    return max(relative_error(a, n) for a, n in zip(analytic, numeric, strict=True))
