"""Sequence networks: portfolio weights from a lookback window of returns.

Both networks read the input row as the flattened, time-major window of trailing daily
returns, oldest first: a row of width ``window * n_assets`` whose reshape to
``(window, n_assets)`` gives one day per row. ``x.reshape(batch, window, n_assets)``
recovers the window; the caller standardizes each column beforehand.

- :class:`RecurrentAllocator`: an LSTM, GRU or tanh RNN over the days, one day a step;
- :class:`TCNAllocator`: residual blocks of causal dilated convolutions over the days.

The body's output at the last day goes through a linear layer of
``head.n_outputs(n_assets)`` units and then the allocation head (see
:mod:`neuralfolio.nn._heads`), which turns it into weights of shape (batch, n_assets).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from neuralfolio.errors import ConfigError
from neuralfolio.nn._heads import AllocationHead, SoftmaxHead

__all__ = ["RecurrentAllocator", "TCNAllocator"]

_CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def _size(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or a ConfigError naming ``name``."""
    try:
        n = operator.index(value)  # ints and numpy ints; not floats, not bools below
    except TypeError:
        n = None
    if n is None or isinstance(value, bool) or n < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}.")
    return int(n)


def _dropout(value: Any) -> float:
    """``value`` as a float in [0, 1), or a ConfigError."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        p = math.nan
    if not 0.0 <= p < 1.0:
        raise ConfigError(
            f"dropout must be a number in [0, 1), got {value!r}; use 0.0 to turn it off."
        )
    return p


def _check_window(cls: str, n_inputs: int, n_assets: int, window: int) -> None:
    """Raise unless ``n_inputs`` is the width of a flattened window of returns."""
    if n_inputs == window * n_assets:
        return
    fix = f"set n_inputs={window * n_assets}"
    if n_inputs % n_assets == 0:
        fix += f", or window={n_inputs // n_assets} if the features use that window"
    raise ConfigError(
        f"{cls} got n_inputs={n_inputs}, but it reads each input row as the flattened window "
        f"of trailing returns, window * n_assets = {window} * {n_assets} = "
        f"{window * n_assets} values. Build the features with kind 'returns' and the same "
        f"window ({window}), or {fix}."
    )


class _SequenceAllocator(nn.Module):
    """Shared input checks and reshaping of the sequence allocators."""

    asset_agnostic: ClassVar[bool] = False
    scale_inputs: ClassVar[bool] = True

    n_inputs: int
    n_assets: int
    window: int
    head: AllocationHead

    def _init_common(self, n_inputs: int, n_assets: int, window: int,
                     head: AllocationHead | None) -> int:
        """Check and store the sizes and head; return the head's input width."""
        n_inputs = _size("n_inputs", n_inputs)
        n_assets = _size("n_assets", n_assets)
        window = _size("window", window)
        _check_window(type(self).__name__, n_inputs, n_assets, window)
        if head is None:
            head = SoftmaxHead()
        if not isinstance(head, AllocationHead):
            raise ConfigError(
                f"head must be an AllocationHead, got {type(head).__name__}; build one with "
                f"make_head(name, **kwargs) or leave it out for a softmax head."
            )
        self.n_inputs, self.n_assets, self.window = n_inputs, n_assets, window
        self.head = head
        return head.n_outputs(n_assets)  # raises ConfigError when the head cannot fit

    def _sequence(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Inputs (..., n_inputs) as (batch, window, n_assets), and the leading shape."""
        if x.ndim < 1 or x.shape[-1] != self.n_inputs:
            raise ConfigError(
                f"{type(self).__name__} expects inputs of shape (batch, {self.n_inputs}) = "
                f"(batch, window * n_assets) with window={self.window} and "
                f"n_assets={self.n_assets}, got {tuple(x.shape)}. Build the features with "
                f"kind 'returns' and window={self.window} on the same {self.n_assets} assets."
            )
        lead = tuple(x.shape[:-1])
        return x.reshape(-1, self.window, self.n_assets), lead


class RecurrentAllocator(_SequenceAllocator):
    """Recurrent network (LSTM, GRU or tanh RNN) over a window of returns.

    Parameters
    ----------
    n_inputs : int
        Input width; must equal ``window * n_assets`` (see the module notes).
    n_assets : int
    window : int
        Days in the lookback window, the sequence length.
    head : AllocationHead, optional
        Maps the raw scores to weights; :class:`SoftmaxHead` by default.
    cell : {"lstm", "gru", "rnn"}
        ``torch.nn.LSTM``, ``torch.nn.GRU`` or ``torch.nn.RNN`` (tanh).
    hidden_size : int
        Width of the recurrent state.
    num_layers : int
        Stacked recurrent layers.
    dropout : float
        In [0, 1). Dropout between stacked layers (only when ``num_layers > 1``) and on the
        last hidden state before the output layer (training only).

    Notes
    -----
    ``forward`` maps inputs of shape (batch, window * n_assets), the time-major window
    with the oldest day first, to weights of shape (batch, n_assets). Each day's
    ``n_assets`` returns are one step of the sequence; the output at the last day goes
    through ``Linear(hidden_size, head.n_outputs(n_assets))`` and then the head.
    """

    def __init__(self, n_inputs: int, n_assets: int, window: int,
                 head: AllocationHead | None = None, cell: str = "lstm",
                 hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        n_out = self._init_common(n_inputs, n_assets, window, head)
        if cell not in _CELLS:
            raise ConfigError(f"Unknown cell {cell!r}; choose one of {', '.join(_CELLS)}.")
        self.cell = cell
        self.hidden_size = _size("hidden_size", hidden_size)
        self.num_layers = _size("num_layers", num_layers)
        self.dropout = _dropout(dropout)
        rnn_kw: dict[str, Any] = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.rnn = _CELLS[cell](
            self.n_assets, self.hidden_size, self.num_layers, batch_first=True,
            dropout=self.dropout if self.num_layers > 1 else 0.0, **rnn_kw,
        )
        self.drop = nn.Dropout(self.dropout)
        self.out = nn.Linear(self.hidden_size, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weights, shape (batch, n_assets), from inputs, shape (batch, window * n_assets)."""
        seq, lead = self._sequence(x)
        states, _ = self.rnn(seq)  # (batch, window, hidden_size)
        w = self.head(self.out(self.drop(states[:, -1])))
        return w.reshape(*lead, self.n_assets)

    def config(self) -> dict[str, Any]:
        """Constructor arguments but the head: ``RecurrentAllocator(**config, head=head)``."""
        return {
            "n_inputs": self.n_inputs,
            "n_assets": self.n_assets,
            "window": self.window,
            "cell": self.cell,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
        }


class _CausalConv(nn.Module):
    """``Conv1d`` padded on the left only: the output at day t sees days <= t."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, c_out, length) from (batch, c_in, length)."""
        return self.conv(F.pad(x, (self.pad, 0)))


class _TemporalBlock(nn.Module):
    """Residual block: two causal dilated convolutions, each with ReLU and dropout.

    ``relu(body(x) + skip(x))`` where ``skip`` is a 1x1 convolution when the channel
    counts differ and the identity otherwise (Bai, Kolter & Koltun, 2018).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int,
                 dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _CausalConv(c_in, c_out, kernel_size, dilation), nn.ReLU(), nn.Dropout(dropout),
            _CausalConv(c_out, c_out, kernel_size, dilation), nn.ReLU(), nn.Dropout(dropout),
        )
        self.skip: nn.Module = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, c_out, length) from (batch, c_in, length)."""
        return torch.relu(self.body(x) + self.skip(x))


class TCNAllocator(_SequenceAllocator):
    """Temporal convolutional network over a window of returns.

    Parameters
    ----------
    n_inputs : int
        Input width; must equal ``window * n_assets`` (see the module notes).
    n_assets : int
        Input channels of the first convolution.
    window : int
        Days in the lookback window, the sequence length.
    head : AllocationHead, optional
        Maps the raw scores to weights; :class:`SoftmaxHead` by default.
    channels : sequence of int
        Output channels of each residual block; block ``i`` has dilation ``2**i``.
    kernel_size : int
        Width of every convolution, in days.
    dropout : float
        In [0, 1). Dropout after each convolution's ReLU (training only).

    Notes
    -----
    ``forward`` maps inputs of shape (batch, window * n_assets), the time-major window with
    the oldest day first, to weights of shape (batch, n_assets). The conv stack
    (:attr:`tcn`) maps (batch, n_assets, window) to (batch, channels[-1], window); every
    convolution is padded with zeros on the left only, so its output at day ``t`` depends on
    days ``<= t`` alone. The channels at the last day go through
    ``Linear(channels[-1], head.n_outputs(n_assets))`` and then the head.

    Each block holds two convolutions with dilation ``d = 2**i``, so the last day's output
    sees the last :attr:`receptive_field` ``= 1 + 2 (kernel_size - 1) (2**len(channels) - 1)``
    days. Days older than that are ignored: keep ``receptive_field >= window`` (more blocks
    or a wider kernel) for the network to use the whole window.
    """

    def __init__(self, n_inputs: int, n_assets: int, window: int,
                 head: AllocationHead | None = None, channels: Sequence[int] = (32, 32),
                 kernel_size: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        n_out = self._init_common(n_inputs, n_assets, window, head)
        if isinstance(channels, str) or not isinstance(channels, Sequence) or not channels:
            raise ConfigError(
                f"channels must be a non-empty sequence of integers, one per residual block, "
                f"for example (32, 32); got {channels!r}."
            )
        self.channels = tuple(_size(f"channels[{i}]", c) for i, c in enumerate(channels))
        self.kernel_size = _size("kernel_size", kernel_size)
        self.dropout = _dropout(dropout)
        blocks, c_in = [], self.n_assets
        for i, c_out in enumerate(self.channels):
            blocks.append(_TemporalBlock(c_in, c_out, self.kernel_size, 2**i, self.dropout))
            c_in = c_out
        self.tcn = nn.Sequential(*blocks)
        self.out = nn.Linear(c_in, n_out)

    @property
    def receptive_field(self) -> int:
        """Days the output at the last day depends on: ``1 + sum_i 2 (kernel_size - 1) 2**i``."""
        return 1 + 2 * (self.kernel_size - 1) * (2 ** len(self.channels) - 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Conv stack output, shape (batch, channels[-1], window), from (batch, n_inputs)."""
        seq, _ = self._sequence(x)
        return self.tcn(seq.transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weights, shape (batch, n_assets), from inputs, shape (batch, window * n_assets)."""
        seq, lead = self._sequence(x)
        h = self.tcn(seq.transpose(1, 2))[:, :, -1]  # (batch, channels[-1])
        return self.head(self.out(h)).reshape(*lead, self.n_assets)

    def config(self) -> dict[str, Any]:
        """Constructor arguments but the head: ``TCNAllocator(**config, head=head)``."""
        return {
            "n_inputs": self.n_inputs,
            "n_assets": self.n_assets,
            "window": self.window,
            "channels": list(self.channels),
            "kernel_size": self.kernel_size,
            "dropout": self.dropout,
        }
