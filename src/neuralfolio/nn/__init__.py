"""Neural allocators: networks, training, saving and loading."""

from neuralfolio.nn._allocator import NeuralAllocator
from neuralfolio.nn._network import ACTIVATIONS, DenseAllocator
from neuralfolio.nn._train import LOSSES, TrainConfig, TrainHistory, train_network

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "DenseAllocator",
    "NeuralAllocator",
    "TrainConfig",
    "TrainHistory",
    "train_network",
]
