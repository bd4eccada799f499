"""The neural allocator: features + scaler + network, trained on label weights."""

from __future__ import annotations

import itertools
import json
import platform
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from neuralfolio.data import simple_returns
from neuralfolio.errors import ConfigError, DataError, DataWarning, ModelError
from neuralfolio.features import (
    OOD_Z,
    FeatureSpec,
    InputRange,
    Standardizer,
    covariance_features,
    feature_names,
    latest_features,
    make_features,
)
from neuralfolio.nn._attention import AssetAttentionAllocator
from neuralfolio.nn._config import TrainConfig
from neuralfolio.nn._heads import make_head
from neuralfolio.nn._losses import Turnover
from neuralfolio.nn._models import (
    build_network,
    head_config,
    label_constraints,
    network_from_config,
)
from neuralfolio.nn._network import DenseAllocator
from neuralfolio.nn._train import TrainHistory, train_network
from neuralfolio.optimize import Constraints, LabelSet, scenario_labels
from neuralfolio.optimize._scenarios import COVARIANCE_ONLY
from neuralfolio.scratch.runtime import DenseForward

if TYPE_CHECKING:
    from neuralfolio.scratch.runtime import NumpyAllocator

__all__ = ["NeuralAllocator"]

FORMAT_VERSION = 2
_WEIGHTS_FILE = "model.safetensors"
_MANIFEST_FILE = "manifest.json"


class NeuralAllocator:
    """A network that maps market data to portfolio weights.

    Parameters
    ----------
    features : FeatureSpec or {"risk", "prices", "returns"}
        Input formulation (see :mod:`neuralfolio.features`).
    train : TrainConfig, optional
        Network family, head, loss and training hyperparameters. An imitation loss trains
        on label weights, an outcome loss on the returns realized after each decision.
    augment : int
        Number of synthetic covariance scenarios (bootstrapped from the training returns and
        solved by the minimum-variance optimizer) added to the training rows; ``risk``
        inputs only. See :mod:`neuralfolio.optimize._scenarios`.

    Attributes
    ----------
    assets_ : list of str
        Asset names seen in ``fit``. Inputs are matched to them by name (any column order;
        outputs are keyed by name too); an asset-agnostic network
        (``train.model="attention"``) also takes other assets.
    network_ : torch.nn.Module
        One of the families of :data:`neuralfolio.nn.MODEL_NAMES`, ending in its head.
    scaler_ : Standardizer or None
        Input scaling fitted on the training rows; None for the attention family, whose
        inputs are scale-free and of any width.
    history_ : TrainHistory
    training_period_ : tuple of str
        First and last label dates used (validation included).
    input_range_ : InputRange or None
        Mean and deviation of the training inputs: :meth:`predict` warns about (or
        refuses) inputs beyond ``OOD_Z`` training deviations. None for models saved
        before it was recorded.
    labels_ : dict or None
        What the labels were: objective, window, covariance and constraints (from a
        :class:`~neuralfolio.optimize.LabelSet`), or ``{"source": "given"}`` for a plain
        DataFrame; None for an outcome loss.

    Examples
    --------
    >>> from neuralfolio.data import load_prices
    >>> from neuralfolio.optimize import min_variance_labels
    >>> prices = load_prices("gfc")
    >>> labels = min_variance_labels(prices, window=60).weights
    >>> model = NeuralAllocator("risk", TrainConfig(hidden=(32,), max_epochs=5))
    >>> model = model.fit(prices, labels)              # doctest: +SKIP
    >>> model.predict(prices).iloc[-1].sum()          # doctest: +SKIP
    1.0
    """

    def __init__(self, features: FeatureSpec | str = "risk", train: TrainConfig | None = None,
                 augment: int = 0):
        self.features = FeatureSpec(features) if isinstance(features, str) else features
        self.train = train if train is not None else TrainConfig()
        if augment < 0:
            raise ConfigError(f"augment must be >= 0 scenarios, got {augment}.")
        if augment and self.features.kind != "risk":
            raise ConfigError(
                "augment works with risk inputs only: scenarios are covariances, and there "
                "are no prices to go with them. Use features='risk' or augment=0."
            )
        self.augment = int(augment)

    # ------------------------------------------------------------------ fitting
    @property
    def asset_agnostic(self) -> bool:
        """Whether the fitted network allocates any number of assets (attention family)."""
        return bool(getattr(self.network_, "asset_agnostic", False))

    def _align(self, prices: pd.DataFrame) -> pd.DataFrame:
        """``prices`` with its columns in training order, matched by name.

        Columns are names, not positions: the training assets in any order are put back in
        training order. An asset-agnostic network takes any other set of assets as given.
        """
        cols = [str(c) for c in prices.columns]
        if len(set(cols)) != len(cols):
            dup = sorted({c for c in cols if cols.count(c) > 1})
            raise DataError(f"The prices name asset(s) {dup} more than once; give each "
                            "asset one column.")
        if set(cols) == set(self.assets_):
            if cols == self.assets_:
                return prices
            return prices.set_axis(cols, axis=1).loc[:, self.assets_]
        if self.asset_agnostic and len(cols) >= 1:
            return prices
        missing = [a for a in self.assets_ if a not in cols]
        extra = [a for a in cols if a not in self.assets_]
        detail = [f"missing {missing}"] if missing else []
        detail += [f"unexpected {extra}"] if extra else []
        raise ModelError(
            f"The model was trained on assets {self.assets_} but the prices have {cols} "
            f"({'; '.join(detail)}). Give prices with the training assets (any order; "
            "--assets selects columns in the CLI), or train a model on these assets."
        )

    def _check_labels(self, labels: pd.DataFrame, n_assets: int) -> None:
        """Warn when labels break the head's mandate: the network could not imitate them."""
        b = make_head(self.train.head, **self.train.head_options).bounds(n_assets)
        w = labels.to_numpy(dtype=np.float64)
        over = w > b.upper + 1e-6
        under = w < b.lower - 1e-6
        gross = np.abs(w).sum(axis=1) > b.gross + 1e-6
        if over.any() or under.any() or gross.any():
            cols = [str(c) for c in labels.columns]
            worst = []
            if over.any():
                j = int(np.argmax((w - b.upper).max(axis=0)))
                worst.append(f"{cols[j]} reaches {w[:, j].max():.1%} above its cap "
                             f"{b.upper[j]:.1%}")
            if under.any():
                j = int(np.argmax((b.lower - w).max(axis=0)))
                worst.append(f"{cols[j]} reaches {w[:, j].min():.1%} below its floor "
                             f"{b.lower[j]:.1%}")
            if gross.any():
                worst.append(f"gross leverage reaches {np.abs(w).sum(axis=1).max():.2f} "
                             f"above {b.gross:.2f}")
            share = float((over.any(axis=1) | under.any(axis=1) | gross).mean())
            warnings.warn(
                f"On {share:.0%} of the label dates the labels break the {self.train.head!r} "
                f"head's mandate ({'; '.join(worst)}): the network cannot output them. Make "
                "labels under the head's constraints: rolling_labels(..., constraints="
                "label_constraints(train, n_assets)), which `neuralfolio train` and the "
                "backtest do.", DataWarning, stacklevel=3)

    def fit(
        self,
        prices: pd.DataFrame,
        labels: pd.DataFrame | None = None,
        *,
        warm_start: bool = False,
        augment: int | None = None,
        max_epochs: int | None = None,
        progress: bool = False,
    ) -> NeuralAllocator:
        """Train on every date that has inputs and what the loss needs.

        Imitation losses need a label for the date; outcome losses need ``train.horizon``
        days of returns realized *after* the date, so the last ``horizon`` dates of
        ``prices`` only serve as outcomes. The last ``train.val_fraction`` of the dates is
        held out for early stopping, after a purge gap of ``max(features.window, horizon)``
        dates so that no validation input, label or outcome shares returns with a training
        one.

        Parameters
        ----------
        prices : DataFrame, shape (n_dates, n_assets)
            Prices up to the end of the training period.
        labels : LabelSet or DataFrame, shape (n_labels, n_assets), optional
            Target weights by date, for imitation losses; only dates present in ``prices``
            are used. A :class:`~neuralfolio.optimize.LabelSet` also says how they were made
            (recorded in the manifest; synthetic scenarios are then solved for the same
            objective and constraints). Labels outside the head's mandate (above a cap,
            say) give a :class:`~neuralfolio.errors.DataWarning`.
        warm_start : bool
            Continue from the current network and input scaling (fine-tune) instead of
            starting afresh. The current parameters stay unless an epoch beats their loss
            on this fit's validation dates.
        augment : int, optional
            Scenarios for this fit only, instead of ``self.augment`` (fine-tuning needs
            fewer than a fresh fit).
        max_epochs : int, optional
            Epochs for this fit only, instead of ``train.max_epochs``.
        progress : bool
            Show a progress bar.

        Returns
        -------
        self
        """
        loss = self.train.loss_fn()
        needs_target, needs_returns = "target" in loss.needs, "returns" in loss.needs
        label_params = None
        if isinstance(labels, LabelSet):
            labels, label_params = labels.weights, dict(labels.params)
        elif labels is not None:
            label_params = {"source": "given"}
        fine_tune = warm_start and hasattr(self, "network_")
        if fine_tune:
            prices = self._align(prices)  # the network's assets, in its order
        if needs_target and labels is None:
            raise ConfigError(
                f"The loss {loss.spec!r} imitates label weights but no labels were given; "
                "pass labels (e.g. min_variance_labels(prices).weights) or train on realized "
                "outcomes with a loss such as 'variance'."
            )
        if labels is not None and list(labels.columns) != list(prices.columns):
            if sorted(map(str, labels.columns)) != sorted(map(str, prices.columns)):
                raise DataError(
                    f"Label columns {list(labels.columns)} do not match price columns "
                    f"{list(prices.columns)}; make labels from the same price panel."
                )
            labels = labels.set_axis([str(c) for c in labels.columns], axis=1).loc[
                :, [str(c) for c in prices.columns]].set_axis(prices.columns, axis=1)
        if needs_target:
            self._check_labels(labels.loc[labels.index.intersection(prices.index)],
                               prices.shape[1])
        raw = make_features(prices, self.features)
        dates = raw.index
        if needs_target:
            dates = dates.intersection(labels.index)
        horizon = self.train.horizon if needs_returns else 0
        if needs_returns:
            # Outcomes of a decision at t: the returns of t+1 .. t+horizon.
            last = prices.index[len(prices) - 1 - horizon] if len(prices) > horizon else None
            dates = dates[dates <= last] if last is not None else dates[:0]
        gap = max(self.features.window, horizon)
        vf = self.train.val_fraction
        n_train, n_val = split_dates(len(dates), gap, vf)
        if n_train < MIN_TRAIN_DATES or n_val < MIN_VAL_DATES:
            needed = min_fit_dates(gap, vf)
            span = f" ({dates[0].date()}..{dates[-1].date()})" if len(dates) else ""
            what = "inputs and labels" if needs_target else "inputs"
            what += f" and {horizon} days of outcomes" if needs_returns else ""
            raise DataError(
                f"Only {len(dates)} dates with {what}{span}; training with "
                f"val_fraction={vf} and a purge gap of {gap} dates needs at least {needed}. "
                "Give a longer training period or a shorter window."
            )
        x = raw.loc[dates].to_numpy()
        y = labels.loc[dates].to_numpy() if needs_target else None
        r = _outcomes(prices, dates, horizon) if needs_returns else None
        x_train = x[:n_train]
        y_train = None if y is None else y[:n_train]
        n_scenarios = self.augment if augment is None else int(augment)
        if n_scenarios and (self.features.kind != "risk" or needs_returns):
            raise ConfigError(
                "augment adds covariance scenarios with optimizer labels: it works with risk "
                f"inputs and an imitation loss only (here {self.features.kind} inputs, loss "
                f"{loss.spec!r}). Set augment=0."
            )
        if n_scenarios and any(isinstance(t, Turnover) for _, t in loss.terms):
            raise ConfigError(
                f"The loss {loss.spec!r} compares consecutive dates, but synthetic scenarios "
                "are not a time series. Set augment=0 to train with turnover."
            )
        scenario_params = None
        if n_scenarios:
            # Scenarios come from returns up to the last training date: none from validation,
            # solved for the labels' objective under the labels' constraints.
            objective, constraints = self._scenario_problem(label_params, prices.shape[1])
            returns = simple_returns(prices.loc[: dates[n_train - 1]]).to_numpy()
            covs, weights = scenario_labels(
                returns, n_scenarios, window=self.features.window, objective=objective,
                constraints=constraints, seed=self.train.seed + n_train,
            )
            scenario_params = {"n": n_scenarios, "objective": objective,
                               "window": self.features.window,
                               "constraints": constraints.to_dict()}
            x_train = np.concatenate(
                [x_train, covariance_features(covs, self.features.unconstrained)])
            y_train = np.concatenate([y_train, weights])
        if fine_tune:
            net = self.network_
        else:
            self.assets_ = [str(c) for c in prices.columns]
            torch.manual_seed(self.train.seed)
            net = build_network(self.train, self.features, x.shape[1], len(self.assets_))
            keep = len(self.assets_) if getattr(net, "prior", False) else 0
            self.scaler_ = (Standardizer().fit(x_train, passthrough=keep)
                            if net.scale_inputs else None)
            self.input_range_ = InputRange.fit(x[:n_train], self.features)
        run = self.train if max_epochs is None else replace(self.train, max_epochs=max_epochs)
        self.history_: TrainHistory = train_network(
            net, self._scale(x_train), y_train, self._scale(x[-n_val:]),
            None if y is None else y[-n_val:], run,
            r_train=None if r is None else r[:n_train],
            r_val=None if r is None else r[-n_val:],
            progress=progress,
            description=f"training {self.train.model} ({self.features.kind} inputs)",
            keep_start=fine_tune,
        )
        self.network_ = net
        self._numpy_layers = None
        self.training_period_ = (str(dates[0].date()), str(dates[-1].date()))
        self.labels_ = (None if label_params is None
                        else {**label_params, "scenarios": scenario_params})
        return self

    def _scenario_problem(self, label_params: dict | None, n_assets: int
                          ) -> tuple[str, Constraints]:
        """Objective and constraints of the synthetic scenarios' labels: the labels' own
        when known, else minimum variance under the head's mandate."""
        if label_params and "objective" in label_params:
            objective = label_params["objective"]
            if objective not in COVARIANCE_ONLY:
                raise ConfigError(
                    f"augment solves scenario covariances, which have no expected returns or "
                    f"return scenarios, so it cannot make {objective!r} labels (only "
                    f"{', '.join(COVARIANCE_ONLY)}). Set augment=0 for these labels.")
            return objective, Constraints(**label_params.get("constraints", {}))
        return "min_variance", label_constraints(self.train, n_assets)

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) if self.scaler_ is None else self.scaler_.transform(x)

    # --------------------------------------------------------------- prediction
    def _require_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise ModelError("This NeuralAllocator is not fitted; call fit() or load() first.")

    def _forward(self, x: np.ndarray) -> np.ndarray:
        xs = torch.tensor(self._scale(x), dtype=torch.float32)
        with torch.no_grad():
            return self.network_(xs).double().numpy()

    def predict(self, prices: pd.DataFrame, *, guard: str | None = "warn",
                max_z: float = OOD_Z) -> pd.DataFrame:
        """Weights for every date of ``prices`` that has enough history.

        Parameters
        ----------
        prices : DataFrame, shape (n_dates, n_assets)
            The training assets, matched by column name in any order (any assets for an
            asset-agnostic network).
        guard : {"warn", "raise", None}
            What to do when an input lies more than ``max_z`` training standard deviations
            from its training mean (the network would extrapolate): a
            :class:`~neuralfolio.errors.DataWarning` naming the worst input, its z-score
            and date; a :class:`~neuralfolio.errors.DataError`; or nothing (see
            :meth:`input_zscores`).
        max_z : float

        Returns
        -------
        DataFrame, shape (n_dates - lookback + 1, n_assets)
            Row t uses prices up to t only; columns are the assets of ``prices``, in its
            order.
        """
        self._require_fitted()
        if guard not in ("warn", "raise", None):
            raise ConfigError(f"guard must be 'warn', 'raise' or None, got {guard!r}.")
        aligned = self._align(prices)
        raw = make_features(aligned, self.features)
        if guard is not None:
            self._guard(raw, aligned.columns, guard, max_z)
        w = pd.DataFrame(self._forward(raw.to_numpy()), index=raw.index,
                         columns=[str(c) for c in aligned.columns])
        return w.loc[:, [str(c) for c in prices.columns]].set_axis(prices.columns, axis=1)

    def input_zscores(self, prices: pd.DataFrame) -> pd.DataFrame:
        """How far each date's inputs are from the training inputs.

        Parameters
        ----------
        prices : DataFrame, shape (n_dates, n_assets)

        Returns
        -------
        DataFrame, shape (n_dates - lookback + 1, 2)
            ``max_z``: the largest absolute z-score of the date's inputs (training
            standard deviations from the training mean), and ``input``: which one, e.g.
            ``"price of GE"``. Empty when the model has no recorded input range.
        """
        self._require_fitted()
        aligned = self._align(prices)
        raw = make_features(aligned, self.features)
        return self._zscores(raw, aligned.columns)

    def _zscores(self, raw: pd.DataFrame, assets) -> pd.DataFrame:
        rng = getattr(self, "input_range_", None)
        if rng is None:
            return pd.DataFrame(columns=["max_z", "input"], index=raw.index[:0])
        z = rng.zscores(raw.to_numpy())
        worst = np.argmax(z, axis=1)
        names = feature_names(self.features, [str(a) for a in assets])
        return pd.DataFrame({"max_z": z[np.arange(len(z)), worst],
                             "input": [names[j] for j in worst]}, index=raw.index)

    def _guard(self, raw: pd.DataFrame, assets, guard: str, max_z: float) -> None:
        z = self._zscores(raw, assets)
        out = z[z["max_z"] > max_z]
        if not len(out):
            return
        date = out["max_z"].idxmax()
        worst = out.loc[date]
        when = f"on {date.date()}" if isinstance(date, pd.Timestamp) else f"for the {date}"
        message = (
            f"On {len(out)} of {len(z)} date(s) an input lies beyond {max_z:g} training "
            f"standard deviations (trained on {self.training_period_[0]}.."
            f"{self.training_period_[1]}); the worst is the {worst['input']} at "
            f"{worst['max_z']:.1f} sd {when}. The network extrapolates there: its "
            "weights are unreliable.")
        if guard == "raise":
            raise DataError(message + " Re-train on data that covers these prices, or "
                            "accept the risk without --strict (guard='warn').")
        warnings.warn(message, DataWarning, stacklevel=3)

    def predict_latest(self, history: np.ndarray) -> np.ndarray:
        """Weights for the last row of a price history: one real-time update.

        Parameters
        ----------
        history : ndarray, shape (>= lookback, n_assets)
            Prices, oldest first, assets in training order.

        Returns
        -------
        ndarray, shape (n_assets,)
        """
        self._require_fitted()
        history = np.asarray(history, dtype=np.float64)
        if history.ndim != 2 or (history.shape[1] != len(self.assets_)
                                 and not self.asset_agnostic):
            raise ModelError(
                f"history must have shape (n_dates, {len(self.assets_)}), got {history.shape}."
            )
        if len(history) < self.features.lookback:
            raise DataError(
                f"history has {len(history)} rows; these inputs need {self.features.lookback}."
            )
        raw = latest_features(history, self.features)
        net = self.network_
        if isinstance(net, DenseAllocator) and net.numpy_ready:
            return self._dense_plan()(raw)
        if isinstance(net, AssetAttentionAllocator) and net.numpy_ready:
            return net.numpy_forward(raw)
        return self._forward(raw[None, :])[0]

    def to_numpy_runtime(self) -> NumpyAllocator:
        """This fitted model as a :class:`~neuralfolio.scratch.runtime.NumpyAllocator`: the
        same single updates (within 1e-6; float64 throughout) from an object that needs
        no PyTorch, saved with its ``save`` and read back where torch is not installed.

        Raises
        ------
        ConfigError
            The network is not dense or attention, or its head has no NumPy version
            (cash heads, capped).
        """
        from neuralfolio.nn._network import head_spec
        from neuralfolio.scratch.runtime import NumpyAllocator

        self._require_fitted()
        net = self.network_
        params: dict[str, np.ndarray] = {}
        if self.scaler_ is not None:
            params["scaler.mean"] = self.scaler_.mean_
            params["scaler.scale"] = self.scaler_.scale_
        if isinstance(net, DenseAllocator) and net.numpy_ready:
            layers = net.to_numpy()
            for i, (w, b, _) in enumerate(layers):
                params[f"layer{i}.weight"], params[f"layer{i}.bias"] = w, b
            arch = {"activations": [a for _, _, a in layers], **net.numpy_prior()}
            kind = "dense"
        elif isinstance(net, AssetAttentionAllocator) and net.numpy_ready:
            params.update(net._numpy_params())
            arch, kind = net.config(), "attention"
        else:
            raise ConfigError(
                f"A {type(net).__name__} with head {net.head.name!r} "
                f"(cash={net.head.cash}) has no NumPy runtime; export dense or attention "
                "networks with a softmax, simplex or long/short head (no cash).")
        return NumpyAllocator(kind, self.features, params, arch, head_spec(net.head),
                              self.assets_, self.asset_agnostic)

    def _layers(self) -> list[tuple[np.ndarray, np.ndarray, str]]:
        # NumPy copy of the network for single updates: no framework overhead per call.
        if self._numpy_layers is None:
            self._numpy_layers = self.network_.to_numpy()
        return self._numpy_layers

    def _dense_plan(self) -> DenseForward:
        """The dense network and input scaler compiled for single updates; rebuilt
        whenever ``_layers()`` is (fit and load reset it)."""
        layers = self._layers()
        cached = getattr(self, "_numpy_plan", None)
        if cached is None or cached[0] is not layers:
            scaler = (None if self.scaler_ is None
                      else (self.scaler_.mean_, self.scaler_.scale_))
            cached = self._numpy_plan = (
                layers, DenseForward(layers, **self.network_.numpy_prior(), scaler=scaler))
        return cached[1]

    # -------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` and ``manifest.json`` into directory ``path``.

        Returns
        -------
        Path
            The directory written.
        """
        self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"network.{k}": v.contiguous() for k, v in self.network_.state_dict().items()}
        if self.scaler_ is not None:
            tensors["scaler.mean"] = torch.as_tensor(self.scaler_.mean_)
            tensors["scaler.scale"] = torch.as_tensor(self.scaler_.scale_)
        if getattr(self, "input_range_", None) is not None:
            tensors["inputs.mean"] = torch.as_tensor(self.input_range_.mean)
            tensors["inputs.std"] = torch.as_tensor(self.input_range_.std)
        save_file(tensors, str(path / _WEIGHTS_FILE))
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": "NeuralAllocator",
            "architecture": {"class": type(self.network_).__name__, **self.network_.config()},
            "head": head_config(self.network_),
            "asset_agnostic": self.asset_agnostic,
            "features": self.features.to_dict(),
            "train": self.train.to_dict(),
            "augment": self.augment,
            "labels": getattr(self, "labels_", None),
            "assets": self.assets_,
            "training_period": list(self.training_period_),
            "history": self.history_.to_dict(),
            "versions": _versions(),
        }
        (path / _MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> NeuralAllocator:
        """Load a model written by :meth:`save` (no pickle is involved)."""
        path = Path(path)
        manifest_path, weights_path = path / _MANIFEST_FILE, path / _WEIGHTS_FILE
        if not manifest_path.exists() or not weights_path.exists():
            raise ModelError(
                f"{path} is not a saved model: expected {_MANIFEST_FILE} and {_WEIGHTS_FILE} "
                "there (written by NeuralAllocator.save or `neuralfolio train`)."
            )
        try:
            manifest = json.loads(manifest_path.read_text())
            tensors = load_file(str(weights_path))
        except (json.JSONDecodeError, OSError, Exception) as exc:
            raise ModelError(f"Could not read the model in {path}: {exc}") from exc
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{manifest_path}: format version {manifest.get('format_version')!r}, this "
                f"neuralfolio reads version {FORMAT_VERSION}. Re-train or re-save the model."
            )
        try:
            model = cls(FeatureSpec.from_dict(manifest["features"]),
                        TrainConfig.from_dict(manifest["train"]), manifest.get("augment", 0))
            net = network_from_config(manifest["architecture"], manifest["head"])
            net.load_state_dict(
                {k.removeprefix("network."): v for k, v in tensors.items()
                 if k.startswith("network.")}
            )
        except (KeyError, TypeError, RuntimeError, ConfigError) as exc:
            raise ModelError(f"{path}: manifest and weights do not agree: {exc}") from exc
        net.eval()
        model.network_ = net
        model._numpy_layers = None
        model.scaler_ = (
            Standardizer.from_arrays(tensors["scaler.mean"].numpy(),
                                     tensors["scaler.scale"].numpy())
            if "scaler.mean" in tensors else None
        )
        model.assets_ = list(manifest["assets"])
        model.input_range_ = (
            InputRange(tensors["inputs.mean"].numpy(), tensors["inputs.std"].numpy(),
                       model.features) if "inputs.mean" in tensors else None)
        model.labels_ = manifest.get("labels")
        model.training_period_ = tuple(manifest["training_period"])
        model.history_ = TrainHistory.from_dict(manifest["history"])
        model.manifest_ = manifest
        return model


MIN_TRAIN_DATES = 20
"""Fewest training dates a fit accepts (after the validation split and purge gap)."""
MIN_VAL_DATES = 5
"""Fewest validation dates a fit accepts."""


def split_dates(n_dates: int, gap: int, val_fraction: float) -> tuple[int, int]:
    """Training and validation date counts of a fit on ``n_dates``: the last
    ``round(val_fraction * n_dates)`` validate, the ``gap`` before them are purged."""
    n_val = round(n_dates * val_fraction)
    return n_dates - n_val - gap, n_val


def min_fit_dates(gap: int, val_fraction: float) -> int:
    """Fewest dates :meth:`NeuralAllocator.fit` accepts with this purge gap and split."""
    for n in itertools.count(1):
        n_train, n_val = split_dates(n, gap, val_fraction)
        if n_train >= MIN_TRAIN_DATES and n_val >= MIN_VAL_DATES:
            return n
    raise AssertionError("unreachable")  # pragma: no cover


def _outcomes(prices: pd.DataFrame, dates: pd.Index, horizon: int) -> np.ndarray:
    """Returns realized after each date: shape (n_dates, n_assets), or with ``horizon > 1``
    (n_dates, horizon, n_assets) holding days t+1 .. t+horizon."""
    p = prices.to_numpy(dtype=np.float64)
    pos = prices.index.get_indexer(dates)
    steps = pos[:, None] + np.arange(horizon + 1)[None, :]
    path = p[steps]  # (n_dates, horizon + 1, n_assets)
    r = path[:, 1:] / path[:, :-1] - 1.0
    return r[:, 0] if horizon == 1 else r


def _versions() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "neuralfolio": version("neuralfolio"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
