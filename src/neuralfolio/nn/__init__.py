"""Neural allocators: networks, training, saving and loading.

Names are imported on first use, so ``neuralfolio.nn.TrainConfig`` (and the command line's
``--help``) does not pay for importing PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from neuralfolio.nn._config import LOSS_NAMES, MODEL_NAMES, TrainConfig

if TYPE_CHECKING:
    from neuralfolio.nn._allocator import NeuralAllocator
    from neuralfolio.nn._attention import AssetAttentionAllocator
    from neuralfolio.nn._heads import (
        HEADS,
        AllocationHead,
        CappedSimplexHead,
        LongShortHead,
        SimplexHead,
        SoftmaxHead,
        make_head,
    )
    from neuralfolio.nn._losses import Loss, parse_loss
    from neuralfolio.nn._models import build_network, label_constraints
    from neuralfolio.nn._network import ACTIVATIONS, DenseAllocator, numpy_forward
    from neuralfolio.nn._sequence import RecurrentAllocator, TCNAllocator
    from neuralfolio.nn._skfolio import NeuralOptimization
    from neuralfolio.nn._train import LOSSES, TrainHistory, resolve_device, train_network

__all__ = [
    "ACTIVATIONS",
    "HEADS",
    "LOSSES",
    "LOSS_NAMES",
    "MODEL_NAMES",
    "AllocationHead",
    "AssetAttentionAllocator",
    "CappedSimplexHead",
    "DenseAllocator",
    "LongShortHead",
    "Loss",
    "NeuralAllocator",
    "NeuralOptimization",
    "RecurrentAllocator",
    "SimplexHead",
    "SoftmaxHead",
    "TCNAllocator",
    "TrainConfig",
    "TrainHistory",
    "build_network",
    "label_constraints",
    "make_head",
    "numpy_forward",
    "parse_loss",
    "resolve_device",
    "train_network",
]

_LAZY = {
    **dict.fromkeys(["HEADS", "AllocationHead", "CappedSimplexHead", "LongShortHead",
                     "SimplexHead", "SoftmaxHead", "make_head"], "_heads"),
    **dict.fromkeys(["Loss", "parse_loss"], "_losses"),
    "NeuralAllocator": "_allocator",
    "AssetAttentionAllocator": "_attention",
    "build_network": "_models",
    "label_constraints": "_models",
    "RecurrentAllocator": "_sequence",
    "TCNAllocator": "_sequence",
    "NeuralOptimization": "_skfolio",
    "ACTIVATIONS": "_network",
    "DenseAllocator": "_network",
    "numpy_forward": "_network",
    "LOSSES": "_train",
    "TrainHistory": "_train",
    "resolve_device": "_train",
    "train_network": "_train",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"neuralfolio.nn.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'neuralfolio.nn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
