"""A skfolio optimization estimator backed by a :class:`~neuralfolio.nn.NeuralAllocator`."""

from __future__ import annotations

import copy
import numbers
from dataclasses import MISSING, fields
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import skfolio.typing as skt
import sklearn.utils.validation as skv
from skfolio.optimization import BaseOptimization
from skfolio.prior import ReturnDistribution

from neuralfolio.errors import ConfigError, DataError, SolverError
from neuralfolio.features import FEATURE_KINDS, FeatureSpec
from neuralfolio.nn._allocator import (
    MIN_TRAIN_DATES,
    MIN_VAL_DATES,
    NeuralAllocator,
    min_fit_dates,
)
from neuralfolio.nn._config import TrainConfig
from neuralfolio.nn._losses import Turnover
from neuralfolio.optimize import OBJECTIVES, rolling_labels

__all__ = ["EXPECTED_FAILED_CHECKS", "TRAIN_PARAMS", "NeuralOptimization"]

TRAIN_PARAMS: tuple[str, ...] = tuple(f"train__{f.name}" for f in fields(TrainConfig))
"""The nested parameters of :class:`NeuralOptimization`: one per :class:`TrainConfig` field."""

_TRAIN_FIELDS = frozenset(name.removeprefix("train__") for name in TRAIN_PARAMS)

_SHORT = ("fits {n} random rows, fewer than a network trains on ({MIN_TRAIN_DATES} training "
          "and {MIN_VAL_DATES} validation dates after a purge gap: 30 observations in the "
          "smallest configuration); fit raises a ValueError giving n_samples and the minimum")
_NOT_RETURNS = ("fits {what}, with values <= -1, which are not linear returns of an asset "
                "whose price stays positive; fit raises a ValueError saying so")


def _short(n: int, also: str = "") -> str:
    return _SHORT.format(n=n, MIN_TRAIN_DATES=MIN_TRAIN_DATES,
                         MIN_VAL_DATES=MIN_VAL_DATES) + also


EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_dict_unchanged": _short(20),
    "check_dont_overwrite_parameters": _short(20),
    "check_estimators_dtypes": _short(20),
    "check_f_contiguous_array_estimator": _short(20),
    "check_fit2d_1feature": _short(10),
    "check_methods_subset_invariance": _short(20),
    "check_fit2d_predict1d": _short(20, " (MeanRisk fails it too: its predict does not "
                                        "refuse 1-D X)"),
    "check_methods_sample_order_invariance": _short(20, " (MeanRisk fails it too: predict "
                                                        "returns a Portfolio)"),
    "check_estimators_nan_inf": _short(10, " (MeanRisk fails it too: its predict takes NaN)"),
    "check_estimators_fit_returns_self": _NOT_RETURNS.format(what="21 blob points"),
    "check_estimators_overwrite_params": _NOT_RETURNS.format(what="21 blob points"),
    "check_readonly_memmap_input": _NOT_RETURNS.format(what="21 blob points"),
    "check_positive_only_tag_during_fit": _NOT_RETURNS.format(what="the centred iris data"),
    "check_n_features_in_after_fitting": _NOT_RETURNS.format(what="15 standard-normal rows")
    + " (MeanRisk fails it too: EmpiricalMu has no partial_fit)",
}
"""The :func:`sklearn.utils.estimator_checks.check_estimator` checks that
:class:`NeuralOptimization` fails, with the reason: pass it as ``expected_failed_checks``.

Every one fits random data that a neural allocator cannot train on: fewer rows than its
training and validation split needs, or values <= -1 that are not linear returns. The
fit raises a clear ValueError there, but the checks expect a fitted estimator. Every
other check passes, for a small configuration (``features="risk"``, ``window=3``,
``train={"val_fraction": 0.18, ...}``, which trains on 30 observations); one that needs
more observations also fails the checks on 30 rows for the same reason."""

_COURSE_NETWORK: dict[str, Any] = {"model": "dense", "head": "softmax"}
"""What the default network changes for price or return-window inputs, which the attention
family does not read: the project's ``network_prices`` policy runs the same network as
dense layers with a softmax head (its model and head options dropped)."""


def _default_settings(features: Any) -> dict[str, Any]:
    """The project's default imitation network for these inputs (unvalidated settings)."""
    # Imported here: neuralfolio.config imports neuralfolio.nn, which would import this
    # module while neuralfolio.config is half initialized.
    from neuralfolio.config import DEFAULT_IMITATION, with_defaults

    base = copy.deepcopy(DEFAULT_IMITATION)
    return base if features == "risk" else with_defaults(base, _COURSE_NETWORK)


def _default_augment() -> int:
    """Synthetic scenarios of the project's default run (``RunConfig.augment``)."""
    from neuralfolio.config import run_defaults

    return int(run_defaults()["augment"])


def _field_defaults() -> dict[str, Any]:
    return {f.name: f.default_factory() if f.default is MISSING else f.default
            for f in fields(TrainConfig)}


def _train_settings(train: Any, features: Any) -> dict[str, Any] | None:
    """Every :class:`TrainConfig` field that the ``train`` parameter stands for, before
    validation (fit validates); None when ``train`` is not None, a dict or a TrainConfig."""
    if isinstance(train, TrainConfig):
        return copy.deepcopy({f.name: getattr(train, f.name) for f in fields(TrainConfig)})
    if train is not None and not isinstance(train, dict):
        return None
    from neuralfolio.config import with_defaults

    merged = with_defaults(_default_settings(features), dict(train or {}))
    settings = {**_field_defaults(), **merged}
    return copy.deepcopy({k: v for k, v in settings.items() if k in _TRAIN_FIELDS})


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


def _is_int(value: Any, low: int) -> bool:
    return (not isinstance(value, bool) and isinstance(value, numbers.Integral)
            and value >= low)


class NeuralOptimization(BaseOptimization):
    """Neural allocator as a skfolio optimization estimator.

    ``fit`` solves the ``objective`` on the rolling ``window`` of the training returns
    (the labels), trains a :class:`~neuralfolio.nn.NeuralAllocator` to imitate those
    weights from the same trailing window, and sets ``weights_`` to the network's
    allocation at the last training date. ``predict`` holds those weights over the
    returns it is given (as skfolio's optimizers do), so ``cross_val_predict`` with a
    :class:`~skfolio.model_selection.WalkForward` gives the out-of-sample path of a
    strategy that retrains at the start of every test fold.

    By default the network is the project's default imitation network, that of the
    ``network`` policy of ``neuralfolio backtest`` and ``neuralfolio demo``: the
    attention family over assets on risk inputs with a sparsemax (``simplex``) head,
    trained for 40 epochs on the labels plus 20,000 synthetic covariance scenarios
    (:data:`neuralfolio.config.DEFAULT_IMITATION` over :class:`TrainConfig`, and
    ``RunConfig.augment``), read from :mod:`neuralfolio.config` when ``fit`` runs.
    Training it takes seconds to minutes per fit; for quick experiments pass fewer
    epochs and scenarios, e.g. ``NeuralOptimization(augment=0, train={"max_epochs": 5})``.

    Parameters
    ----------
    objective : str, default="min_variance"
        Optimizer whose rolling solutions are the training labels; one of
        :data:`neuralfolio.optimize.OBJECTIVES`.
    window : int, default=126
        Trailing returns behind each label and each network input; at least 2, and at
        least 3 with ``features="risk"`` (the covariance of 2 returns is singular).
    features : str, default="risk"
        Input formulation, one of :data:`neuralfolio.features.FEATURE_KINDS`
        (:mod:`neuralfolio.features`); ``window`` is its window too.
    train : None, dict or TrainConfig, default=None
        Network and training hyperparameters (the fields of :class:`TrainConfig`).

        - ``None``: the project's default imitation network (above). The attention
          family reads risk inputs only, so with ``features="prices"`` or ``"returns"``
          the default is that network as dense layers with a softmax head (the project's
          ``network_prices`` policy).
        - a dict: settings over that default, merged by
          :func:`neuralfolio.config.with_defaults` (a different ``model`` or ``head``
          drops the default's ``model_options`` or ``head_options``), so
          ``{"max_epochs": 5}`` is the default network trained for 5 epochs.
        - a :class:`TrainConfig`: exactly that network, no defaults added.

        Stored as given and validated in ``fit``.

        Nested parameters: ``get_params(deep=True)`` also gives ``train__<field>`` for
        every :class:`TrainConfig` field (:data:`TRAIN_PARAMS`: ``train__model``,
        ``train__model_options``, ``train__head``, ``train__loss``, ``train__lr``,
        ``train__max_epochs``, ...), with the values ``train`` resolves to (defaults
        included), and ``set_params``, pipelines,
        :class:`~sklearn.model_selection.GridSearchCV` and
        :class:`~sklearn.model_selection.RandomizedSearchCV` take them:
        ``set_params(train__max_epochs=2, train__head="capped")``. Setting one stores
        ``train`` as a dict of settings: those set so far, over the default, when
        ``train`` is None or a dict; all of a TrainConfig's fields when it is one (the
        TrainConfig itself is left alone). They are validated in ``fit``; an unknown field
        raises a :class:`~neuralfolio.errors.ConfigError` (a ValueError) that lists the
        valid ones. A ``fallback`` estimator's parameters nest as ``fallback__<param>``.
    augment : int or None, default=None
        Synthetic covariance scenarios added to the training rows (``risk`` inputs and
        imitation losses only). None: the project's run default (``RunConfig.augment``,
        20,000) where scenarios apply, 0 where they do not (other inputs, outcome or
        turnover losses).
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
        The trained network, with its input scaling and training history; its ``train``
        and ``augment`` are the settings the parameters resolved to.
    labels_ : DataFrame of shape (n_label_dates, n_assets) or None
        The rolling ``objective`` weights the network was trained on; None when
        ``train.loss`` is an outcome loss, which needs no labels.
    n_features_in_ : int
        Number of assets seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Asset names seen during ``fit``; defined only when ``X`` has string column names.

    Raises
    ------
    ConfigError
        From ``fit``: an invalid parameter. From ``set_params``: an unknown ``train__``
        field. A ValueError.
    DataError
        From ``fit`` and ``predict``: ``X`` is not a 2-D numeric array (sparse input is a
        TypeError), has NaN or infinite values; from ``fit`` also: returns <= -1, too few
        observations for ``window`` (the message gives ``n_samples`` and the minimum), or
        degenerate returns (a constant or singular covariance window). From ``predict``:
        the training assets in another column order. A ValueError.

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
    asset names ``x0, x1, ...``. ``weights_`` follow the columns of the training ``X``:
    ``predict`` refuses a frame with those assets in another order (scikit-learn's
    convention for ``feature_names_in_``) rather than hold weights on the wrong assets.

    scikit-learn's :func:`~sklearn.utils.estimator_checks.check_estimator` passes with a
    small configuration (``window=3``, ``train={"val_fraction": 0.18, ...}``, which trains
    on 30 observations), except for the checks in :data:`EXPECTED_FAILED_CHECKS` (pass it
    as ``expected_failed_checks``). Each fits random data that no network trains on, and
    ``fit`` raises a ValueError that says why:

    - fewer rows than the training and validation split needs (10 or 20):
      ``check_dict_unchanged``, ``check_dont_overwrite_parameters``,
      ``check_estimators_dtypes``, ``check_f_contiguous_array_estimator``,
      ``check_fit2d_1feature``, ``check_methods_subset_invariance``, and
      ``check_fit2d_predict1d``, ``check_methods_sample_order_invariance``,
      ``check_estimators_nan_inf``, which :class:`~skfolio.optimization.MeanRisk` fails
      too;
    - values <= -1, not linear returns: ``check_estimators_fit_returns_self``,
      ``check_estimators_overwrite_params``, ``check_readonly_memmap_input``,
      ``check_positive_only_tag_during_fit``, and ``check_n_features_in_after_fitting``,
      which MeanRisk fails too.

    ``tests/nn/test_skfolio_estimator.py`` checks the same properties (parameters left
    alone, dtypes, memory layouts, read-only input, ``fit`` returning ``self``) on returns.

    Examples
    --------
    >>> from skfolio.model_selection import WalkForward, cross_val_predict
    >>> from neuralfolio.data import synthetic_prices
    >>> from neuralfolio.nn import NeuralOptimization, TrainConfig
    >>> X = synthetic_prices(4, 400, seed=1).pct_change().dropna()
    >>> model = NeuralOptimization(window=30, augment=0,
    ...                            train=TrainConfig(hidden=(8,), max_epochs=3))
    >>> pred = cross_val_predict(model, X, cv=WalkForward(train_size=200, test_size=50))
    >>> len(pred.portfolios)
    3
    >>> float(model.fit(X).weights_.sum().round(6))
    1.0
    >>> model = NeuralOptimization(window=30, augment=0).set_params(train__max_epochs=2)
    >>> model.get_params()["train__model"], model.train
    ('attention', {'max_epochs': 2})
    """

    allocator_: NeuralAllocator
    labels_: pd.DataFrame

    def __init__(
        self,
        objective: str = "min_variance",
        window: int = 126,
        features: str = "risk",
        train: TrainConfig | dict | None = None,
        augment: int | None = None,
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

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters of this estimator; with ``deep``, also ``train__<field>`` for every
        :class:`TrainConfig` field, as the ``train`` parameter resolves it.

        Parameters
        ----------
        deep : bool, default=True
            Include nested parameters (``train__<field>``, ``fallback__<param>``).

        Returns
        -------
        params : dict
        """
        params = super().get_params(deep=deep)
        if deep:
            settings = _train_settings(self.train, self.features)
            for name, value in (settings or {}).items():
                params[f"train__{name}"] = value
        return params

    def set_params(self, **params: Any) -> NeuralOptimization:
        """Set parameters, ``train__<field>`` ones included (see the ``train`` parameter).

        Parameters
        ----------
        **params : dict
            Estimator parameters; ``train__<field>`` sets one :class:`TrainConfig` field.

        Returns
        -------
        self : NeuralOptimization

        Raises
        ------
        ConfigError
            A ``train__`` name that is not a :class:`TrainConfig` field, or ``train__``
            settings while ``train`` is neither None, a dict nor a TrainConfig.
        """
        nested = {key.removeprefix("train__"): value for key, value in params.items()
                  if key.startswith("train__")}
        direct = {key: value for key, value in params.items()
                  if not key.startswith("train__")}
        unknown = sorted(set(nested) - _TRAIN_FIELDS)
        if unknown:  # before anything is set
            raise ConfigError(
                f"Invalid parameter(s) {['train__' + k for k in unknown]} for estimator "
                f"{type(self).__name__}: not TrainConfig fields. Valid nested train "
                f"parameters: {', '.join(TRAIN_PARAMS)}."
            )
        if direct:
            super().set_params(**direct)  # ``train`` itself first, then its fields
        if nested:
            train = self.train
            if isinstance(train, TrainConfig):
                base = _train_settings(train, self.features) or {}
            elif train is None or isinstance(train, dict):
                base = dict(train or {})
            else:
                raise ConfigError(
                    f"Cannot set {sorted('train__' + k for k in nested)}: train is a "
                    f"{type(train).__name__}, not None, a dict of TrainConfig settings or a "
                    "TrainConfig."
                )
            self.train = {**base, **nested}
        return self

    # ----------------------------------------------------------------- validation
    def _train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` the ``train`` parameter resolves to (validated)."""
        train = self.train
        if isinstance(train, TrainConfig):
            return train
        if train is not None and not isinstance(train, dict):
            raise ConfigError(
                f"train must be a TrainConfig, a dict of its fields or None, got "
                f"{type(train).__name__}."
            )
        from neuralfolio.config import with_defaults

        return TrainConfig.from_dict(with_defaults(_default_settings(self.features),
                                                   dict(train or {})))

    def _augment(self, spec: FeatureSpec, train: TrainConfig) -> int:
        augment = self.augment
        if augment is not None:
            if not _is_int(augment, 0):
                raise ConfigError(
                    f"augment must be an integer >= 0 scenarios or None, got {augment!r}.")
            return int(augment)
        loss = train.loss_fn()
        applies = (spec.kind == "risk" and "target" in loss.needs
                   and "returns" not in loss.needs
                   and not any(isinstance(term, Turnover) for _, term in loss.terms))
        return _default_augment() if applies else 0

    def _check_params(self) -> tuple[FeatureSpec, TrainConfig, int]:
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"Unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}."
            )
        window = self.window
        if not _is_int(window, 2):
            raise ConfigError(f"window must be an integer >= 2 returns, got {window!r}.")
        if self.features not in FEATURE_KINDS:
            raise ConfigError(
                f"Unknown features {self.features!r}; choose one of {', '.join(FEATURE_KINDS)}."
            )
        if self.features == "risk" and window < 3:
            raise ConfigError(
                f"features='risk' needs window >= 3, got {window}: the covariance of 2 "
                "returns is singular (rank one, which Ledoit-Wolf does not shrink), and the "
                "risk inputs invert it. Use a longer window, or features 'returns' or "
                "'prices'."
            )
        spec = FeatureSpec(self.features, int(window))
        train = self._train_config()
        return spec, train, self._augment(spec, train)

    def _check_array(self, X: Any, *, reset: bool) -> np.ndarray:
        """``X`` as a 2-D float array via scikit-learn's checks (messages it expects).

        With ``reset``, records ``n_features_in_`` and ``feature_names_in_``. NaN and inf
        are left to the caller, which names the asset and date.
        """
        kwargs = {"dtype": np.float64, "accept_sparse": False, "ensure_min_features": 1,
                  "ensure_all_finite": False}
        try:
            shape = None if sp.issparse(X) else np.shape(X)
        except (TypeError, ValueError):  # ragged; check_array says so
            shape = None
        if shape is not None and len(shape) != 2:
            raise DataError(
                f"X must be 2-D, shape (n_observations, n_assets), got shape {shape}. "
                "Reshape your data: X.reshape(-1, 1) for one asset, X.reshape(1, -1) for one "
                "observation."
            )
        if shape is not None and 0 in shape:
            what = "sample(s)" if shape[0] == 0 else "feature(s)"
            raise DataError(
                f"X has 0 {what} (shape={shape}) while a minimum of 1 is required: give at "
                "least one observation of at least one asset."
            )
        try:
            if reset:
                return skv.validate_data(self, X, reset=True, **kwargs)
            return skv.check_array(X, input_name="X", **kwargs)
        except ValueError as exc:
            raise DataError(
                f"X must be a 2-D array of numeric linear returns, shape (n_observations, "
                f"n_assets): {exc}"
            ) from exc

    @staticmethod
    def _check_finite(values: np.ndarray, columns: list[str], index: Any) -> None:
        bad = ~np.isfinite(values)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            where = index[row] if index is not None else f"row {row}"
            raise DataError(
                f"X has {int(bad.sum())} NaN or infinite returns (first: asset "
                f"{columns[col]!r} at {where}). Fill or drop them first, for example "
                "X.dropna() or X.fillna(0.0)."
            )

    def _to_prices(self, X: Any, min_obs: int) -> pd.DataFrame:
        """Validate linear returns ``X`` and compound them into a price panel."""
        if isinstance(X, pd.DataFrame):
            columns = [str(c) for c in X.columns]
            index = X.index
        else:
            columns, index = None, None
        values = self._check_array(X, reset=True)
        n_obs, n_assets = values.shape
        if columns is None:
            columns = [f"x{i}" for i in range(n_assets)]
        if len(set(columns)) != n_assets:
            raise DataError(f"X has duplicate asset names {columns}; give each asset one name.")
        self._check_finite(values, columns, index)
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
                f"X has {n_obs} observation{'s' * (n_obs != 1)} (n_samples={n_obs}), but "
                f"window={self.window} needs at least {min_obs}: {self.window} returns for "
                f"the first label, then enough label dates for {MIN_TRAIN_DATES} training "
                f"and {MIN_VAL_DATES} validation dates with a purge gap of {self.window} "
                "between them. Give a longer training set (for example a larger WalkForward "
                "train_size) or a smaller window."
            )
        if (isinstance(index, pd.DatetimeIndex) and index.is_monotonic_increasing
                and index.is_unique):
            dates = index.insert(0, index[0] - pd.offsets.BDay(1))
        else:
            dates = pd.bdate_range("2000-01-03", periods=n_obs + 1)
        with np.errstate(over="ignore"):
            levels = 100.0 * np.cumprod(np.vstack([np.ones(n_assets), 1.0 + values]), axis=0)
        if not np.isfinite(levels).all():
            raise DataError(
                "The returns of X compound to prices beyond the floating-point range; X must "
                "hold linear returns (0.01 for +1%), not percentages or price levels."
            )
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
            A parameter is invalid (unknown objective or features, bad window, train
            settings or augment). A ValueError.
        DataError
            ``X`` is not a 2-D numeric array, has NaN or infinite values, returns <= -1,
            too few observations, or degenerate returns. A ValueError.
        TypeError
            ``X`` is sparse, or holds objects that are not numbers.
        """
        spec, train, augment = self._check_params()
        prices = self._to_prices(X, _min_observations(spec.window, train.val_fraction))
        try:
            self._fit_allocator(prices, spec, train, augment)
        except (SolverError, np.linalg.LinAlgError) as exc:
            raise DataError(
                f"X looks degenerate: the labels or risk inputs failed with: {exc} This "
                f"happens when a window of {spec.window} returns has a constant or singular "
                "covariance (assets whose returns are constant, or move in lockstep); drop "
                "those assets or use a longer window."
            ) from exc
        return self

    def _fit_allocator(self, prices: pd.DataFrame, spec: FeatureSpec, train: TrainConfig,
                       augment: int) -> None:
        labels = None  # an outcome loss (e.g. "variance") learns from realized returns only
        if "target" in train.loss_fn().needs:
            # solved under the head's mandate: a capped head learns capped labels
            from neuralfolio.nn._models import label_constraints

            labels = rolling_labels(prices, objective=self.objective, window=spec.window,
                                    constraints=label_constraints(train, prices.shape[1]))
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
            allocator = previous.fit(prices, labels, warm_start=True, augment=augment)
        else:
            allocator = NeuralAllocator(spec, train, augment).fit(prices, labels)
        weights = allocator.predict_latest(prices.to_numpy()[-spec.lookback :])
        if not np.isfinite(weights).all():
            raise DataError(
                "The allocator produced non-finite weights at the last training date; check "
                "X for extreme or constant returns."
            )
        self.allocator_ = allocator
        self.labels_ = None if labels is None else labels.weights
        self.weights_ = np.asarray(weights, dtype=np.float64)

    # -------------------------------------------------------------------- predict
    def predict(self, X: Any) -> Any:
        """The :class:`~skfolio.portfolio.Portfolio` holding ``weights_`` over ``X``.

        As :meth:`skfolio.optimization.BaseOptimization.predict`, after checking ``X``
        like ``fit`` does: 2-D, numeric, finite, and, when ``fit`` saw asset names, the
        same assets in the same order.

        Parameters
        ----------
        X : array-like of shape (n_observations, n_assets) or ReturnDistribution
            Linear returns of the training assets.

        Returns
        -------
        Portfolio
            Or a :class:`~skfolio.portfolio.FailedPortfolio` after a failed fit with
            ``raise_on_failure=False``.

        Raises
        ------
        DataError
            ``X`` is not 2-D or numeric, has NaN or infinite values, or has the training
            assets in another order. A ValueError.
        """
        if getattr(self, "weights_", None) is not None and not isinstance(
                X, ReturnDistribution):
            names = getattr(self, "feature_names_in_", None)
            if names is not None and isinstance(X, pd.DataFrame):
                cols = [str(c) for c in X.columns]
                if sorted(cols) == sorted(map(str, names)) and cols != list(names):
                    raise DataError(
                        f"X has the training assets in another order: {cols}, but weights_ "
                        f"follow the order of fit, {list(names)}. Reorder the columns "
                        "first, e.g. X[model.feature_names_in_]."
                    )
            values = self._check_array(X, reset=False)
            columns = (
                [str(c) for c in X.columns] if isinstance(X, pd.DataFrame)
                else [f"x{i}" for i in range(values.shape[1])]
            )
            self._check_finite(values, columns, X.index if isinstance(X, pd.DataFrame) else None)
        return super().predict(X)

    def fit_predict(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """``fit(X, y, **fit_params).predict(X)``: the in-sample Portfolio.

        Parameters
        ----------
        X : array-like of shape (n_observations, n_assets)
            Linear returns of the assets.
        y : Ignored
            Not used; accepted as scikit-learn pipelines pass it.
        **fit_params : dict
            Passed to :meth:`fit`.

        Returns
        -------
        Portfolio
        """
        return self.fit(X, y, **fit_params).predict(X)
