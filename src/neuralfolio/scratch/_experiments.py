"""The chapter's experiments: the toy logistic regressor, two moons, the model summary.

matplotlib and scikit-learn are imported inside the functions that need them, so importing
:mod:`neuralfolio.scratch` costs only NumPy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from neuralfolio.errors import ConfigError
from neuralfolio.scratch._network import LogisticRegressor, Network, summary

__all__ = [
    "TOY_X",
    "TOY_Y",
    "MoonsFit",
    "MoonsReport",
    "chapter_network",
    "chapter_summary",
    "moons_data",
    "toy_logistic",
    "two_moons",
]

# The chapter's toy data: four samples of three binary inputs; y is the first input.
TOY_X = np.array([[0, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float64)
TOY_Y = np.array([[0, 1, 1, 0]], dtype=np.float64).T


# ---------------------------------------------------------------------- toy regressor
def toy_logistic(epochs: int = 20, alpha: float = 1.0, seed: int = 1) -> list[float]:
    """Train the chapter's logistic regressor on its four-sample toy data.

    The weights are drawn exactly as in the chapter, from NumPy's legacy global generator:
    ``np.random.seed(seed)`` then ``W = 2*np.random.random((3, 1)) - 1``, and ``b = 0``.
    Training is full-batch gradient descent with ``dz = A - y``, ``dW = X.T @ dz / N``,
    ``db = mean(dz)``, done by :class:`LogisticRegressor`.

    Parameters
    ----------
    epochs : int
        Number of updates (the chapter runs 20).
    alpha : float
        Learning rate (the chapter uses 1).
    seed : int
        Seed of the legacy global generator (1 reproduces the chapter's printout).

    Returns
    -------
    list of float
        The binary cross-entropy before each update, ``epochs`` values; with the defaults
        they start at 0.822322582088 and end at 0.203407060401 as printed in the chapter.

    Notes
    -----
    This reseeds NumPy's global random state, as the chapter's script does.
    """
    np.random.seed(seed)  # noqa: NPY002 - the chapter's legacy generator, on purpose
    W = 2 * np.random.random((3, 1)) - 1  # noqa: NPY002
    model = LogisticRegressor.from_weights(W, b=0.0)
    return model.fit(TOY_X, TOY_Y, epochs=epochs, alpha=alpha).loss


# ---------------------------------------------------------------------- summary
def chapter_network(hidden: int = 3, seed: int | None = 0) -> Network:
    """The chapter's two-layer network: 2 inputs, ``hidden`` tanh units, 1 sigmoid output."""
    return Network((2, hidden, 1), ("tanh", "sigmoid"), "binary_crossentropy", seed=seed)


def chapter_summary() -> str:
    """Summary table of the chapter's 2-3-1 network (9, 0, 4, 0 parameters; 13 in total)."""
    return summary(chapter_network(), input_dim=2)


# ---------------------------------------------------------------------- two moons
@dataclass
class MoonsFit:
    """One hidden-layer size of :func:`two_moons`.

    Attributes
    ----------
    hidden : int
        Hidden units.
    train_accuracy, test_accuracy : float
        Accuracy on the training and the held-out points.
    precision, recall : float
        Of class 1 on the held-out points.
    confusion : list of list of int
        Held-out confusion matrix ``[[TN, FP], [FN, TP]]`` (rows: true class).
    loss : list of float
        Training loss per epoch.
    seconds : float
        Training time.
    plot : str or None
        Decision-boundary PNG, when written.
    network : Network
        The trained network (left out of :meth:`as_dict`).
    """

    hidden: int
    train_accuracy: float
    test_accuracy: float
    precision: float
    recall: float
    confusion: list[list[int]]
    loss: list[float]
    seconds: float
    plot: str | None = None
    network: Network | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("network")
        return d


@dataclass
class MoonsReport:
    """Everything :func:`two_moons` produced: its settings, one fit per size, plot paths."""

    settings: dict
    fits: dict[int, MoonsFit]
    loss_plot: str | None = None

    def __getitem__(self, hidden: int) -> MoonsFit:
        return self.fits[hidden]

    def as_dict(self) -> dict:
        return {"settings": dict(self.settings), "loss_plot": self.loss_plot,
                "fits": [f.as_dict() for f in self.fits.values()]}


def moons_data(n_train: int = 200, n_test: int = 1000, noise: float = 0.3, seed: int = 0):
    """Noisy two-moons points, split at random into training and held-out sets.

    Returns
    -------
    X_train : ndarray, shape (n_train, 2)
    y_train : ndarray, shape (n_train, 1)
    X_test : ndarray, shape (n_test, 2)
    y_test : ndarray, shape (n_test, 1)
    """
    from sklearn.datasets import make_moons

    if n_train < 2 or n_test < 1:
        raise ConfigError(f"need n_train >= 2 and n_test >= 1, got {n_train} and {n_test}.")
    if not noise >= 0:
        raise ConfigError(f"noise must be >= 0, got {noise!r}.")
    X, y = make_moons(n_samples=n_train + n_test, noise=noise, random_state=seed)
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order].astype(np.float64).reshape(-1, 1)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def _confusion(y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[[TN, FP], [FN, TP]]`` for 0/1 targets ``y`` (N, 1) and predictions (N,)."""
    truth = y[:, 0].astype(int)
    return np.array([[np.sum((truth == t) & (labels == p)) for p in (0, 1)] for t in (0, 1)])


def two_moons(hidden_sizes: Sequence[int] = (1, 3, 500), *, n_train: int = 200,
              n_test: int = 1000, noise: float = 0.3, seed: int = 0, epochs: int = 5000,
              alpha: float = 2.0, init_scale: float = 2.0, wide_init_scale: float = 20.0,
              wide: int = 100, out_dir: str | Path | None = None) -> MoonsReport:
    """Under-, well- and over-fitting on noisy two moons with a 2-h-1 tanh/sigmoid network.

    For each hidden size ``h`` a network ``(2, h, 1)`` with tanh hidden units and a sigmoid
    output is trained by full-batch gradient descent on binary cross-entropy, as in the
    chapter. With the defaults (200 training points, as in the chapter's Keras run, 1000
    held-out points, noise 0.3):

    * ``h = 1`` underfits: its decision boundary is a straight line;
    * ``h = 3`` fits the moons (about 0.9 held-out accuracy);
    * ``h = 500`` fits the noise: near-perfect training accuracy, lower held-out accuracy.

    With the defaults this holds for each of the seeds 0 to 19: the 1-unit network's
    training accuracy is at least 0.03 below the 3-unit one's, the 3-unit network scores
    0.88 to 0.92 on the held-out points, and the 500-unit network reaches 0.975 to 1.0 on
    the training points but at least 0.04 less on the held-out ones, below the 3-unit
    network. Training takes about 3 s for 500 units on one core, 0.3 s for the others.

    Parameters
    ----------
    hidden_sizes : sequence of int
        Hidden-layer sizes to train.
    n_train, n_test, noise, seed
        Data: see :func:`moons_data`. ``seed`` also seeds each network's initial weights.
    epochs, alpha : int, float
        Full-batch gradient-descent steps and learning rate, the same for every size.
    init_scale : float
        Weights start uniform on ``[-init_scale, init_scale)``. The chapter's range is
        ``[-1, 1)``; twice that keeps the 3-unit network out of a poor local minimum (one
        unit wasted, about 0.87 accuracy) that plain gradient descent reaches for some seeds.
    wide_init_scale : float
        First-layer range for networks with at least ``wide`` hidden units. Large input
        weights make each tanh unit a sharp step, so the wide network can wrap its boundary
        around single noisy points within a few thousand steps, which makes the chapter's
        overfitting picture reproducible. Their output layer starts at
        ``init_scale / sqrt(h)``, so the initial loss is of order one. Even so, with such
        sharp units the wide network's loss jumps up and down for the first few hundred
        steps (the step size is large for its curvature) before it settles well below the
        smaller networks' losses: visible in ``moons_loss.png``.
    wide : int
        Hidden size from which ``wide_init_scale`` applies.
    out_dir : str or Path, optional
        Where to write ``moons_h{h}.png`` (decision boundary with the held-out points) for
        each size and ``moons_loss.png`` (loss curves).

    Returns
    -------
    MoonsReport
        ``report[h]`` is the :class:`MoonsFit` of hidden size ``h``.
    """
    sizes = [int(h) for h in hidden_sizes]
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"hidden_sizes must be positive integers, got {list(hidden_sizes)}.")
    X_train, y_train, X_test, y_test = moons_data(n_train, n_test, noise, seed)
    fits = {}
    for h in sizes:
        # Wide nets: sharp first-layer units; output weights shrunk by sqrt(h) so that the
        # initial output z = A1 @ W2, a sum of h terms, stays of order one.
        scales = (wide_init_scale, init_scale / np.sqrt(h)) if h >= wide else init_scale
        net = Network((2, h, 1), ("tanh", "sigmoid"), seed=seed, init_scale=scales)
        start = time.perf_counter()
        history = net.fit(X_train, y_train, epochs=epochs, alpha=alpha)
        seconds = time.perf_counter() - start
        cm = _confusion(y_test, net.predict(X_test))
        (_, fp), (fn, tp) = cm
        fits[h] = MoonsFit(
            hidden=h, train_accuracy=net.accuracy(X_train, y_train),
            test_accuracy=net.accuracy(X_test, y_test),
            precision=float(tp / (tp + fp)) if tp + fp else 0.0,
            recall=float(tp / (tp + fn)) if tp + fn else 0.0,
            confusion=cm.tolist(), loss=history.loss, seconds=seconds, network=net)
    settings = {"hidden_sizes": sizes, "n_train": n_train, "n_test": n_test, "noise": noise,
                "seed": seed, "epochs": epochs, "alpha": alpha, "init_scale": init_scale,
                "wide_init_scale": wide_init_scale, "wide": wide}
    report = MoonsReport(settings=settings, fits=fits)
    if out_dir is not None:
        _write_plots(report, X_test, y_test, Path(out_dir))
    return report


def _write_plots(report: MoonsReport, X: np.ndarray, y: np.ndarray, out_dir: Path) -> None:
    """Decision-boundary PNG per size and one loss-curve PNG, drawn without pyplot."""
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    pad = 0.5
    xs = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, 200)
    ys = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, 200)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    for h, fit in report.fits.items():
        # In chunks: the 500-unit network on the whole grid would need a 320 MB array.
        prob = np.concatenate([fit.network.predict_proba(rows)[:, 0]
                               for rows in np.array_split(grid, 20)]).reshape(gx.shape)
        fig = Figure(figsize=(5, 4), layout="constrained")
        ax = fig.add_subplot()
        ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
        ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1)
        ax.scatter(X[:, 0], X[:, 1], c=y[:, 0], cmap="RdBu_r", s=8, edgecolors="k",
                   linewidths=0.3)
        ax.set_title(f"hidden size {h}: train {fit.train_accuracy:.3f}, "
                     f"held-out {fit.test_accuracy:.3f}")
        path = out_dir / f"moons_h{h}.png"
        fig.savefig(path, dpi=100)
        fit.plot = str(path)
    fig = Figure(figsize=(5, 4), layout="constrained")
    ax = fig.add_subplot()
    for h, fit in report.fits.items():
        ax.plot(fit.loss, label=f"hidden size {h}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (binary cross-entropy)")
    ax.set_yscale("log")
    ax.legend()
    path = out_dir / "moons_loss.png"
    fig.savefig(path, dpi=100)
    report.loss_plot = str(path)
