"""Exception and warning hierarchy.

Every error raised on purpose by neuralfolio derives from :class:`NeuralfolioError`.
Messages name the thing at fault (file, asset, date, field) and say what to do.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DataWarning",
    "InsufficientHistoryError",
    "ModelError",
    "NeuralfolioError",
    "NeuralfolioWarning",
    "SolverError",
]


class NeuralfolioError(Exception):
    """Root of every error neuralfolio raises on purpose."""


class DataError(NeuralfolioError, ValueError):
    """A price panel or data file is unusable as given."""


class InsufficientHistoryError(DataError):
    """There are fewer observations than the windows asked for need."""


class ConfigError(NeuralfolioError, ValueError):
    """A parameter or configuration value is invalid."""


class ModelError(NeuralfolioError):
    """A saved model cannot be loaded or does not fit the data it is given."""


class SolverError(NeuralfolioError, RuntimeError):
    """An optimizer failed to reach a solution."""


class NeuralfolioWarning(UserWarning):
    """Root of neuralfolio's warnings."""


class DataWarning(NeuralfolioWarning):
    """Data was repaired (for example a short gap forward-filled); the message says where."""
