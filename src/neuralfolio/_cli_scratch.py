"""The ``neuralfolio scratch`` commands: the first chapter's NumPy networks, run from the shell.

Registered in :mod:`neuralfolio.cli` with ``app.add_typer(scratch_app, name="scratch")``.
NumPy, scikit-learn, matplotlib and rich are imported inside the commands so the CLI starts
fast.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from neuralfolio.errors import ConfigError

__all__ = ["scratch_app"]

scratch_app = typer.Typer(
    help="The first chapter's glass-box NumPy networks: toy regressor, two moons, summary.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead.")]


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120)


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _sizes(text: str, option: str) -> list[int]:
    """Positive integers from ``"1,3,500"``."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated whole numbers such as 1,3,500, "
                          f"got {text!r}.") from None
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"{option} needs at least one size and every size >= 1, "
                          f"got {text!r}.")
    return sizes


def _check_positive(value: float, option: str) -> None:
    if not value > 0:
        raise ConfigError(f"{option} must be > 0, got {value}.")


@scratch_app.command("toy")
def toy(
    epochs: Annotated[int, typer.Option(help="Gradient-descent steps.")] = 20,
    alpha: Annotated[float, typer.Option(help="Learning rate.")] = 1.0,
    seed: Annotated[int, typer.Option(
        help="Seed of NumPy's legacy global generator (1 gives the chapter's numbers).")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Logistic regressor on the chapter's four-sample toy data: loss before each step.

    Weights start as 2*np.random.random((3, 1)) - 1 after np.random.seed(SEED), the bias at
    0; full-batch gradient descent on binary cross-entropy. The defaults print the
    chapter's twenty losses, 0.822322582088 down to 0.203407060401.

    Example: neuralfolio scratch toy --epochs 20 --alpha 1 --seed 1
    """
    from neuralfolio.scratch import toy_logistic

    if epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}.")
    _check_positive(alpha, "--alpha")
    losses = toy_logistic(epochs=epochs, alpha=alpha, seed=seed)
    if json_out:
        _print_json({"epochs": epochs, "alpha": alpha, "seed": seed, "loss": losses})
        return
    from rich.table import Table

    table = Table(title="Toy regressor: loss before each update")
    table.add_column("epoch", justify="right")
    table.add_column("loss", justify="right")
    for i, loss in enumerate(losses):
        table.add_row(str(i), format(loss, ".12g"))
    _console().print(table)


@scratch_app.command("moons")
def moons(
    hidden: Annotated[str, typer.Option(help="Comma-separated hidden-layer sizes.")
                      ] = "1,3,500",
    n_train: Annotated[int, typer.Option(help="Training points.")] = 200,
    n_test: Annotated[int, typer.Option(help="Held-out points.")] = 1000,
    noise: Annotated[float, typer.Option(help="Standard deviation of the noise.")] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the data and of the weights.")] = 0,
    epochs: Annotated[int, typer.Option(help="Full-batch gradient-descent steps.")] = 5000,
    alpha: Annotated[float, typer.Option(help="Learning rate.")] = 2.0,
    out: Annotated[str | None, typer.Option(
        help="Folder for the decision-boundary and loss-curve PNGs.")] = None,
    history: Annotated[bool, typer.Option(
        help="With --json, include the loss of every epoch.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Two moons with a 2-h-1 tanh/sigmoid network per hidden size: under- and over-fitting.

    Hidden size 1 underfits (a straight boundary), 3 fits the moons and 500 fits the noise
    (near-perfect training accuracy, lower held-out accuracy). Accuracy, precision and
    recall are measured on held-out points.

    Example: neuralfolio scratch moons --hidden 1,3,500 --out runs/scratch
    """
    from neuralfolio.scratch import two_moons

    sizes = _sizes(hidden, "--hidden")
    if epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}.")
    _check_positive(alpha, "--alpha")
    report = two_moons(sizes, n_train=n_train, n_test=n_test, noise=noise, seed=seed,
                       epochs=epochs, alpha=alpha, out_dir=out)
    if json_out:
        data = report.as_dict()
        for fit in data["fits"]:
            fit["final_loss"] = fit["loss"][-1]
            if not history:
                del fit["loss"]
        _print_json(data)
        return
    from rich.table import Table

    table = Table(title=f"Two moons, {n_train} train / {n_test} held-out, noise {noise:g}, "
                        f"{epochs} steps of {alpha:g}")
    for col in ("hidden", "train acc", "held-out acc", "precision", "recall", "final loss",
                "seconds"):
        table.add_column(col, justify="right")
    for fit in report.fits.values():
        table.add_row(str(fit.hidden), f"{fit.train_accuracy:.3f}", f"{fit.test_accuracy:.3f}",
                      f"{fit.precision:.3f}", f"{fit.recall:.3f}", f"{fit.loss[-1]:.4f}",
                      f"{fit.seconds:.1f}")
    console = _console()
    console.print(table)
    plots = [f.plot for f in report.fits.values() if f.plot] + (
        [report.loss_plot] if report.loss_plot else [])
    for path in plots:
        console.print(f"wrote {path}", highlight=False)


@scratch_app.command("summary")
def summary_cmd(
    hidden: Annotated[str, typer.Option(help="Comma-separated hidden-layer sizes.")] = "3",
    input_dim: Annotated[int, typer.Option(help="Number of inputs.")] = 2,
    outputs: Annotated[int, typer.Option(help="Number of outputs.")] = 1,
    activation: Annotated[str, typer.Option(help="Hidden-layer activation.")] = "tanh",
    output_activation: Annotated[str, typer.Option(help="Output activation.")] = "sigmoid",
    json_out: JsonOpt = False,
) -> None:
    """Keras-style layer table of a dense network; the defaults are the chapter's 2-3-1 net.

    One row per Dense layer and per Activation, output shapes (None, k) and parameter
    counts; the chapter's network has 9 + 0 + 4 + 0 = 13 parameters.

    Example: neuralfolio scratch summary --hidden 3 --input-dim 2
    """
    from neuralfolio.scratch import Network, summary_rows

    if input_dim < 1 or outputs < 1:
        raise ConfigError(f"--input-dim and --outputs must be >= 1, got {input_dim} and "
                          f"{outputs}.")
    sizes = [input_dim, *_sizes(hidden, "--hidden"), outputs]
    acts = [activation] * (len(sizes) - 2) + [output_activation]
    loss = {"sigmoid": "binary_crossentropy", "softmax": "categorical_crossentropy"}.get(
        output_activation.strip().lower(), "mse")
    net = Network(sizes, acts, loss, seed=0)
    rows = summary_rows(net)
    total = net.n_params
    if json_out:
        _print_json({"sizes": sizes, "layers": rows, "total_params": total,
                     "trainable_params": total, "non_trainable_params": 0})
        return
    from rich.table import Table

    table = Table(title=f"Network {'-'.join(map(str, sizes))}")
    table.add_column("Layer (type)")
    table.add_column("Output Shape")
    table.add_column("Param #", justify="right")
    for r in rows:
        table.add_row(f"{r['name']} ({r['type']})", r["output_shape"], str(r["params"]))
    console = _console()
    console.print(table)
    console.print(f"Total params: {total:,}\nTrainable params: {total:,}\n"
                  "Non-trainable params: 0", highlight=False)
