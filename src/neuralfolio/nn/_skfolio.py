"""A skfolio optimization estimator backed by a :class:`~neuralfolio.nn.NeuralAllocator`."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd
import skfolio.typing as skt
import sklearn.utils.validation as skv
from skfolio.optimization import BaseOptimization

from neuralfolio.errors import ConfigError, DataError
from neuralfolio.features import FEATURE_KINDS, FeatureSpec
from neuralfolio.nn._allocator import (
    MIN_TRAIN_DATES,
    MIN_VAL_DATES,
    NeuralAllocator,
    min_fit_dates,
)
from neuralfolio.nn._config import TrainConfig
from neuralfolio.optimize import OBJECTIVES, rolling_labels

__all__ = ["NeuralOptimization"]



def _default_train() -> TrainConfig:
    return TrainConfig(hidden=(64, 64), max_epochs=50)


def _min_observations(window: int, val_fraction: float) -> int:
    """Fewest return observations a fit with this ``window`` and ``val_fraction`` needs.

    A panel of ``n`` returns gives ``n + 1 - window`` dates with both inputs and labels;
    :meth:`NeuralAllocator.fit` needs :func:`min_fit_dates` of them (purge gap ``window``).
    """
    return min_fit_dates(window, val_fraction) + window - 1


_ARCHITECTURE = ("model", "hidden", "activation", "dropout", "model_options", "head",
                 "head_options")


def _same_architecture(a: TrainConfig, b: TrainConfig) -> bool:
    """Whether two configs build the same network (fine-tuning keeps the network)."""
    return all(getattr(a, f, None) == getattr(b, f, None) for f in _ARCHITECTURE)


class NeuralOptimization(BaseOptimization):
    """Neural allocator as a skfolio optimization estimator.

    ``fit`` solves the ``objective`` on the rolling ``window`` of the training returns
    (the labels), trains a :class:`~neuralfolio.nn.NeuralAllocator` to imitate those
    weights from the same trailing window, and sets ``weights_`` to the network's
    allocation at the last training date. ``predict`` (inherited from skfolio) holds those
    weights over the returns it is given, so ``cross_val_predict`` with a
    :class:`~skfolio.model_selection.WalkForward` gives the out-of-sample path of a
    strategy that retrains at the start of every test fold.

    Parameters
    ----------
    objective : str, default="min_variance"
        Optimizer whose rolling solutions are the training labels; one of
        :data:`neuralfolio.optimize.OBJECTIVES`.
    window : int, default=126
        Trailing returns behind each label and each network input.
    features : str, default="risk"
        Input formulation, one of :data:`neuralfolio.features.FEATURE_KINDS`
        (:mod:`neuralfolio.features`); ``window`` is its window too.
    train : TrainConfig or dict, optional
        Network and training hyperparameters; a dict is passed to ``TrainConfig``.
        The default (``None``) is ``TrainConfig(hidden=(64, 64), max_epochs=50)``.
    augment : int, default=0
        Synthetic covariance scenarios added to the training rows (``risk`` inputs only).
    warm_start : bool, default=False
        When refitting an estimator that already holds an ``allocator_`` for the same
        assets, inputs and network shape, fine-tune it instead of training a new network. Note that
        skfolio's and scikit-learn's cross-validation clone the estimator for every fold,
        so there it has no effect: every fold trains afresh.
    portfolio_params : dict, optional
        Parameters of the :class:`~skfolio.portfolio.Portfolio` built by ``predict``
        (see :class:`~skfolio.optimization.BaseOptimization`).
    fallback : BaseOptimization | "previous_weights" | list, optional
        skfolio's fallback when ``fit`` raises (see
        :class:`~skfolio.optimization.BaseOptimization`).
    previous_weights : float | dict | array-like, optional
        Previous weights, used by ``fallback="previous_weights"``.
    raise_on_failure : bool, default=True
        If False, a failing ``fit`` warns and sets ``weights_`` to None, and ``predict``
        returns a :class:`~skfolio.portfolio.FailedPortfolio`.

    Attributes
    ----------
    weights_ : ndarray of shape (n_assets,)
        The allocator's weights at the last training date, summing to one (long-only
        unless ``train.head`` allows short positions).
    allocator_ : NeuralAllocator
        The trained network, with its input scaling and training history.
    labels_ : DataFrame of shape (n_label_dates, n_assets) or None
        The rolling ``objective`` weights the network was trained on; None when
        ``train.loss`` is an outcome loss, which needs no labels.
    n_features_in_ : int
        Number of assets seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Asset names seen during ``fit``; defined only when ``X`` has string column names.

    Notes
    -----
    No look-ahead: the labels are recomputed inside each training fold only, from the
    returns passed to ``fit``, and every label and input at date t reads returns up to t.
    The network's validation split (the last ``train.val_fraction`` of the training
    dates, after a purge gap of ``window`` dates) is also taken inside the fold. The
    weights held over a test fold therefore depend on nothing after its training end.

    ``X`` holds linear returns. They are compounded into a price panel starting at 100
    one business day before the first observation; an array, or a frame without a
    ``DatetimeIndex``, gets business-day dates from 2000-01-03 and, for an array,
    asset names ``x0, x1, ...``.

    Examples
    --------
    >>> from skfolio.model_selection import WalkForward, cross_val_predict
    >>> from neuralfolio.data import synthetic_prices
    >>> from neuralfolio.nn import NeuralOptimization, TrainConfig
    >>> X = synthetic_prices(4, 400, seed=1).pct_change().dropna()
    >>> model = NeuralOptimization(window=30, train=TrainConfig(hidden=(8,), max_epochs=3))
    >>> pred = cross_val_predict(model, X, cv=WalkForward(train_size=200, test_size=50))
    >>> len(pred.portfolios)
    3
    >>> float(model.fit(X).weights_.sum().round(6))
    1.0
    """

    allocator_: NeuralAllocator
    labels_: pd.DataFrame

    def __init__(
        self,
        objective: str = "min_variance",
        window: int = 126,
        features: str = "risk",
        train: TrainConfig | dict | None = None,
        augment: int = 0,
        warm_start: bool = False,
        portfolio_params: dict | None = None,
        fallback: skt.Fallback = None,
        previous_weights: skt.MultiInput | None = None,
        raise_on_failure: bool = True,
    ) -> None:
        super().__init__(
            portfolio_params=portfolio_params,
            fallback=fallback,
            previous_weights=previous_weights,
            raise_on_failure=raise_on_failure,
        )
        self.objective = objective
        self.window = window
        self.features = features
        self.train = train
        self.augment = augment
        self.warm_start = warm_start

    # ----------------------------------------------------------------- validation
    def _train_config(self) -> TrainConfig:
        train = self.train
        if train is None:
            return _default_train()
        if isinstance(train, TrainConfig):
            return train
        if isinstance(train, dict):
            return TrainConfig.from_dict(train)
        raise ConfigError(
            f"train must be a TrainConfig, a dict of its fields or None, got "
            f"{type(train).__name__}."
        )

    def _check_params(self) -> tuple[FeatureSpec, TrainConfig]:
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"Unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}."
            )
        window = self.window
        if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 2:
            raise ConfigError(f"window must be an integer >= 2 returns, got {window!r}.")
        if self.features not in FEATURE_KINDS:
            raise ConfigError(
                f"Unknown features {self.features!r}; choose one of {', '.join(FEATURE_KINDS)}."
            )
        augment = self.augment
        if isinstance(augment, bool) or not isinstance(augment, numbers.Integral) or augment < 0:
            raise ConfigError(f"augment must be an integer >= 0 scenarios, got {augment!r}.")
        return FeatureSpec(self.features, int(window)), self._train_config()

    def _to_prices(self, X: Any, min_obs: int) -> pd.DataFrame:
        """Validate linear returns ``X`` and compound them into a price panel."""
        if isinstance(X, pd.DataFrame):
            columns = [str(c) for c in X.columns]
            index = X.index
        else:
            columns, index = None, None
        try:
            values = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"X must hold numeric linear returns, shape (n_observations, n_assets): {exc}"
            ) from exc
        if values.ndim != 2 or values.shape[1] < 1:
            raise DataError(
                f"X must be 2-D, shape (n_observations, n_assets), got shape {values.shape}."
            )
        n_obs, n_assets = values.shape
        if columns is None:
            columns = [f"x{i}" for i in range(n_assets)]
        if len(set(columns)) != n_assets:
            raise DataError(f"X has duplicate asset names {columns}; give each asset one name.")
        bad = ~np.isfinite(values)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            where = index[row] if index is not None else f"row {row}"
            raise DataError(
                f"X has {int(bad.sum())} NaN or infinite returns (first: asset "
                f"{columns[col]!r} at {where}). Fill or drop them before fitting, for example "
                "X.dropna() or X.fillna(0.0)."
            )
        if (values <= -1.0).any():
            row, col = np.argwhere(values <= -1.0)[0]
            where = index[row] if index is not None else f"row {row}"
            raise DataError(
                f"X has returns <= -1 (first: {values[row, col]} for asset {columns[col]!r} at "
                f"{where}). X must hold linear returns (0.01 for +1%) of assets whose price "
                "stays positive; convert percentages or log returns first."
            )
        if n_obs < min_obs:
            raise DataError(
                f"X has {n_obs} observations, but window={self.window} needs at least "
                f"{min_obs}: {self.window} returns for the first label, then enough label "
                f"dates for {MIN_TRAIN_DATES} training and {MIN_VAL_DATES} validation dates "
                f"with a purge gap of {self.window} between them. Give a longer training set "
                "(for example a larger WalkForward train_size) or a smaller window."
            )
        if (isinstance(index, pd.DatetimeIndex) and index.is_monotonic_increasing
                and index.is_unique):
            dates = index.insert(0, index[0] - pd.offsets.BDay(1))
        else:
            dates = pd.bdate_range("2000-01-03", periods=n_obs + 1)
        levels = 100.0 * np.cumprod(np.vstack([np.ones(n_assets), 1.0 + values]), axis=0)
        return pd.DataFrame(levels, index=dates, columns=pd.Index(columns))

    # ------------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> NeuralOptimization:
        """Compute the labels on ``X``, train the allocator and set ``weights_``.

        Parameters
        ----------
        X : array-like of shape (n_observations, n_assets)
            Linear returns of the assets, oldest first.
        y : Ignored
            Not used, present for API consistency.
        **fit_params : dict
            Ignored; accepted so that skfolio can pass the same parameters to fallbacks.

        Returns
        -------
        self : NeuralOptimization
            Fitted estimator.

        Raises
        ------
        ConfigError
            A parameter is invalid (unknown objective or features, bad window).
        DataError
            ``X`` has NaN or infinite values, returns <= -1, or too few observations.
        """
        spec, train = self._check_params()
        prices = self._to_prices(X, _min_observations(spec.window, train.val_fraction))
        # Asset bookkeeping (n_features_in_, feature_names_in_) as skfolio's optimizers do;
        # the array checks were done above with neuralfolio's messages.
        skv.validate_data(self, X, skip_check_array=True)

        labels = None  # an outcome loss (e.g. "variance") learns from realized returns only
        if "target" in train.loss_fn().needs:
            labels = rolling_labels(prices, objective=self.objective, window=spec.window).weights
        previous = getattr(self, "allocator_", None)
        fine_tune = (
            self.warm_start
            and isinstance(previous, NeuralAllocator)
            and hasattr(previous, "network_")
            and previous.assets_ == list(prices.columns)
            and previous.features == spec
            and _same_architecture(previous.train, train)
        )
        if fine_tune:
            previous.train = train  # this fit's epochs, learning rate, ...; same network
            allocator = previous.fit(prices, labels, warm_start=True, augment=int(self.augment))
        else:
            allocator = NeuralAllocator(spec, train, int(self.augment)).fit(prices, labels)
        weights = allocator.predict_latest(prices.to_numpy()[-spec.lookback :])
        if not np.isfinite(weights).all():
            raise DataError(
                "The allocator produced non-finite weights at the last training date; check "
                "X for extreme returns."
            )
        self.allocator_ = allocator
        self.labels_ = labels
        self.weights_ = np.asarray(weights, dtype=np.float64)
        return self
