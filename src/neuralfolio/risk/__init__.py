"""Risk: covariance estimators and the risk measures of a portfolio.

Conventions: returns are daily simple returns, arrays are ``(n_observations, n_assets)``;
a year has :data:`TRADING_DAYS` trading days.
"""

from neuralfolio.risk import _covariance, _measures, _rolling, _var
from neuralfolio.risk._covariance import *  # noqa: F403
from neuralfolio.risk._measures import *  # noqa: F403
from neuralfolio.risk._rolling import *  # noqa: F403
from neuralfolio.risk._var import *  # noqa: F403

__all__ = [*_covariance.__all__, *_measures.__all__, *_rolling.__all__, *_var.__all__]
