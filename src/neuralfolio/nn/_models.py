"""Build any network family from a :class:`TrainConfig`, and rebuild it from a manifest."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from neuralfolio.errors import ConfigError
from neuralfolio.features import FeatureSpec
from neuralfolio.nn._attention import AssetAttentionAllocator
from neuralfolio.nn._config import MODEL_NAMES, TrainConfig
from neuralfolio.nn._heads import AllocationHead, make_head
from neuralfolio.nn._network import DenseAllocator
from neuralfolio.nn._sequence import RecurrentAllocator, TCNAllocator
from neuralfolio.optimize import Constraints

__all__ = ["NETWORK_CLASSES", "build_network", "label_constraints", "network_from_config"]

NETWORK_CLASSES: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (DenseAllocator, RecurrentAllocator, TCNAllocator, AssetAttentionAllocator)
}
"""Network classes by name, as manifests record them."""

_SEQUENCE = ("lstm", "gru", "rnn", "tcn")


def build_network(config: TrainConfig, features: FeatureSpec, n_inputs: int,
                  n_assets: int) -> nn.Module:
    """A fresh network of family ``config.model`` with head ``config.head``.

    Parameters
    ----------
    config : TrainConfig
    features : FeatureSpec
        The inputs it will take; recurrent and convolutional families need ``returns``,
        the attention family ``risk``.
    n_inputs, n_assets : int

    Returns
    -------
    torch.nn.Module
        Maps (batch, n_inputs) to weights (batch, n_assets).
    """
    name, opts = config.model, dict(config.model_options)
    head = make_head(config.head, **config.head_options)
    if name in _SEQUENCE and features.kind != "returns":
        raise ConfigError(
            f"model {name!r} reads a window of returns; use features kind 'returns' "
            f"(got {features.kind!r}), or model 'dense' for {features.kind} inputs."
        )
    if name == "attention" and features.kind != "risk":
        raise ConfigError(
            f"model 'attention' reads per-asset risk inputs; use features kind 'risk' "
            f"(got {features.kind!r})."
        )
    try:
        if name == "dense":
            # Residual on the unconstrained weights whenever the inputs carry them.
            prior = opts.pop("prior", features.kind == "risk" and features.unconstrained)
            _no_options(name, opts)
            return DenseAllocator(n_inputs, n_assets, config.hidden, config.activation,
                                  config.dropout, head=head, prior=bool(prior))
        if name == "tcn":
            return TCNAllocator(n_inputs, n_assets, features.window, head=head,
                                dropout=config.dropout, **opts)
        if name in _SEQUENCE:
            return RecurrentAllocator(n_inputs, n_assets, features.window, head=head,
                                      cell=name, dropout=config.dropout, **opts)
        return AssetAttentionAllocator(dropout=config.dropout,
                                       unconstrained=features.unconstrained, head=head, **opts)
    except TypeError as exc:
        raise ConfigError(
            f"model_options {opts} do not fit model {name!r} ({MODEL_NAMES[name]}): {exc}"
        ) from exc


def _no_options(name: str, opts: dict[str, Any]) -> None:
    if opts:
        raise ConfigError(
            f"model {name!r} takes only the model_option 'prior' (got {sorted(opts)}); set "
            "hidden, activation and dropout directly."
        )


def network_from_config(architecture: dict[str, Any], head: dict[str, Any]) -> nn.Module:
    """Rebuild a network from the ``architecture`` and ``head`` entries of a manifest."""
    arch = dict(architecture)
    cls_name = arch.pop("class")
    if cls_name not in NETWORK_CLASSES:
        raise ConfigError(f"Unknown network class {cls_name!r} in the manifest.")
    h: AllocationHead = make_head(**head)
    if "hidden" in arch:
        arch["hidden"] = tuple(arch["hidden"])
    if "channels" in arch:
        arch["channels"] = tuple(arch["channels"])
    return NETWORK_CLASSES[cls_name](**arch, head=h)


def head_config(network: nn.Module) -> dict[str, Any]:
    """``{"name": ..., **arguments}`` of a network's head, for the manifest."""
    return {"name": network.head.name, **network.head.config()}


def label_constraints(config: TrainConfig, n_assets: int) -> Constraints:
    """The optimizer's constraints that match the mandate of ``config``'s head.

    An imitation network can only learn weights its head can output, so its labels are
    solved under the same rules: per-asset caps for ``capped``, per-asset bounds and the
    gross leverage limit (as a cap on the total short position) for ``long_short``, and the
    fully invested long-only simplex for ``softmax`` and ``simplex``. Cash heads keep fully
    invested labels: a minimum-variance label with cash allowed would be all cash.

    Parameters
    ----------
    config : TrainConfig
    n_assets : int

    Returns
    -------
    Constraints
    """
    b = make_head(config.head, **config.head_options).bounds(n_assets)
    lower, upper = np.asarray(b.lower, float), np.asarray(b.upper, float)

    def compact(v: np.ndarray) -> float | tuple[float, ...]:
        return float(v[0]) if np.all(v == v[0]) else tuple(float(x) for x in v)

    budget = float(b.total[1])
    if lower.min() >= 0:
        return Constraints(compact(lower), compact(np.minimum(upper, max(budget, 0.0))))
    return Constraints(compact(lower), compact(upper), budget=budget,
                       max_short=max((float(b.gross) - budget) / 2.0, 0.0))
