"""neuralfolio: neural-network portfolio allocation and real-time risk management.

A network maps current market data to portfolio weights, so an update is one function
evaluation; it is trained on historically optimal weights, re-trained every so often and
backtested against the optimizer it replaces and against simple rules such as 1/N.
"""

from neuralfolio.errors import (
    ConfigError,
    DataError,
    DataWarning,
    InsufficientHistoryError,
    ModelError,
    NeuralfolioError,
    NeuralfolioWarning,
    SolverError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DataWarning",
    "InsufficientHistoryError",
    "ModelError",
    "NeuralfolioError",
    "NeuralfolioWarning",
    "SolverError",
    "__version__",
]
