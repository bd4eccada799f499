"""Portfolio problems, their fast solvers, rolling label generation and scenarios."""

from neuralfolio.optimize._labels import LabelSet, min_variance_labels
from neuralfolio.optimize._minvar import MinVarianceQP
from neuralfolio.optimize._scenarios import bootstrap_covariances, scenario_labels

__all__ = [
    "LabelSet",
    "MinVarianceQP",
    "bootstrap_covariances",
    "min_variance_labels",
    "scenario_labels",
]
