"""Portfolio problems, their fast solvers, rolling label generation and scenarios."""

from neuralfolio.optimize._labels import LabelSet, min_variance_labels, rolling_labels
from neuralfolio.optimize._minvar import MeanVarianceQP, MinVarianceQP
from neuralfolio.optimize._objectives import (
    FAST_OBJECTIVES,
    OBJECTIVES,
    Constraints,
    PortfolioSolver,
)
from neuralfolio.optimize._scenarios import (
    COVARIANCE_ONLY,
    bootstrap_covariances,
    scenario_labels,
    scenario_training_set,
)

__all__ = [
    "COVARIANCE_ONLY",
    "FAST_OBJECTIVES",
    "OBJECTIVES",
    "Constraints",
    "LabelSet",
    "MeanVarianceQP",
    "MinVarianceQP",
    "PortfolioSolver",
    "bootstrap_covariances",
    "min_variance_labels",
    "rolling_labels",
    "scenario_labels",
    "scenario_training_set",
]
