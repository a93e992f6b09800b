"""``fleet model …``: train, inspect and evaluate the reference models.

``model_app`` is a Typer sub-app for the operator CLI to mount. Only ``train`` needs
TensorFlow (the ``ml`` extra), imported when the command runs; ``evaluate`` needs LiteRT.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from fleet.domain.model_card import ModelCard, TensorSpec
from fleet.inspection import ModelRejected, inspect_model
from fleet.toolkit.sensors import FieldConditions, Task

__all__ = ["model_app"]

model_app = typer.Typer(no_args_is_help=True, help="reference TinyML models: train, inspect")
_out = Console()
_err = Console(stderr=True)


@model_app.command()
def train(
    task: Annotated[Task, typer.Option(help="which reference model")],
    out: Annotated[Path, typer.Option(help="bundle directory to write")],
    seed: Annotated[int, typer.Option(help="seeds the data and the weights")] = 0,
) -> None:
    """Train a reference model, quantise it to int8 and write its bundle."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    try:
        from fleet.toolkit.train import TrainingConfig
        from fleet.toolkit.train import train as train_model
    except ImportError as exc:
        _err.print(f"[red]error:[/] training needs the ml extra: {exc}")
        raise typer.Exit(2) from exc
    from fleet.toolkit.bundle import build_bundle, write_bundle

    with _out.status(f"training the {task} model"):
        trained = train_model(task, TrainingConfig(seed=seed))
        bundle = build_bundle(trained)
    write_bundle(bundle, out)
    evaluation = trained.evaluation
    windows = trained.config.reference_size
    table = Table(title=f"{task} model, accuracy on {windows} held-out windows")
    for column in ("float", "int8", "gap (points)"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{evaluation.float_accuracy:.1%}",
        f"{evaluation.int8_accuracy:.1%}",
        f"{100 * evaluation.gap:+.1f}",
    )
    _out.print(table)
    _out.print(f"decision: {bundle.thresholds.decision.model_dump()}")
    _print_card(bundle.card)
    _out.print(f"wrote {out}/")


@model_app.command()
def inspect(
    model: Annotated[Path, typer.Argument(help="a .tflite file")],
    as_json: Annotated[bool, typer.Option("--json", help="print the card as JSON")] = False,
) -> None:
    """Print what the server reads from a model: its model card."""
    try:
        card = inspect_model(model.read_bytes())
    except OSError as exc:
        _err.print(f"[red]error:[/] cannot read {model}: {exc.strerror}")
        raise typer.Exit(2) from exc
    except ModelRejected as exc:
        _err.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        _out.print_json(card.model_dump_json())
    else:
        _print_card(card)


@model_app.command()
def evaluate(
    bundle_dir: Annotated[Path, typer.Argument(help="a bundle written by fleet model train")],
    seed: Annotated[int | None, typer.Option(help="default: the reference set's")] = None,
    size: Annotated[int | None, typer.Option(min=1, help="windows; default: reference")] = None,
    gain_drift: Annotated[float, typer.Option(help="multiplies every axis")] = 1.0,
    offset_drift: Annotated[float, typer.Option(help="added to every axis, g")] = 0.0,
    noise: Annotated[float, typer.Option(min=0.0, help="extra noise, g")] = 0.0,
) -> None:
    """Run the bundle's int8 model (LiteRT) on held-out windows, optionally drifted."""
    from fleet.toolkit.bundle import BundleError, evaluate_bundle, read_bundle

    try:
        bundle = read_bundle(bundle_dir)
    except BundleError as exc:
        _err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    conditions = FieldConditions(gain_drift=gain_drift, offset_drift=offset_drift, noise=noise)
    result = evaluate_bundle(bundle, conditions=conditions, seed=seed, size=size)
    recorded = bundle.reference.int8_accuracy
    _out.print(
        f"{bundle.task} int8 accuracy on {result.size} windows: {result.accuracy:.1%}"
        f" (reference: {recorded:.1%}, float {bundle.reference.float_accuracy:.1%})"
    )
    labels = bundle.thresholds.labels
    confusion = Table("true \\ predicted", *labels, title="confusion")
    for label, row in zip(labels, result.confusion, strict=True):
        confusion.add_row(label, *(str(count) for count in row))
    _out.print(confusion)
    shifts = Table("histogram", "total variation vs reference", title="shift from the reference")
    for name, shift in result.shifts.items():
        shifts.add_row(name, f"{shift:.3f}")
    _out.print(shifts)


@model_app.command()
def register(
    bundle_dir: Annotated[Path, typer.Argument(help="a bundle written by fleet model train")],
    server: Annotated[str, typer.Option(envvar="FLEET_URL", help="the fleet server's URL")],
    token: Annotated[str, typer.Option(envvar="FLEET_TOKEN", help="an operator API token")],
) -> None:
    """Upload the model and thresholds and register the reference histograms with the
    server's model card, so a release can name them."""
    from fleet.client import AdminClient, ApiError
    from fleet.toolkit.register import BundleFilesError, read_local_bundle, register_bundle

    try:
        bundle = read_local_bundle(bundle_dir)
    except BundleFilesError as exc:
        _err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    try:
        with AdminClient(server, token) as client:
            registered = register_bundle(bundle, client)
    except ApiError as exc:
        _err.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(1) from exc
    except httpx.HTTPError as exc:
        _err.print(f"[red]error:[/] cannot reach {server}: {exc}")
        raise typer.Exit(2) from exc
    _print_card(registered.card)
    if registered.card != bundle.card:
        _err.print(
            f"[yellow]warning:[/] the server's card differs from {bundle_dir}/model_card.json"
        )
    _out.print(f"model       {registered.model_sha256}\nthresholds  {registered.thresholds_sha256}")


def _shape(spec: TensorSpec) -> str:
    """The shape TFLM runs, and the exported signature when it left dimensions open."""
    if spec.shape_signature == spec.shape:
        return str(list(spec.shape))
    return f"{list(spec.shape)} (signature {list(spec.shape_signature)})"


def _print_card(card: ModelCard) -> None:
    table = Table("tensor", "shape", "dtype", "scale", "zero point", title="model card")
    for role, spec in [("in", s) for s in card.inputs] + [("out", s) for s in card.outputs]:
        quantization = spec.quantization
        table.add_row(
            f"{role}: {spec.name}",
            _shape(spec),
            spec.dtype,
            f"{quantization.scale[0]:.6g}" if quantization else "-",
            str(quantization.zero_point[0]) if quantization else "-",
        )
    _out.print(table)
    arena = card.arena
    _out.print(
        f"ops: {', '.join(card.builtin_ops + card.custom_ops)} ({card.operator_count} operators)"
        f"\nflash: {card.flash_bytes} bytes; arena estimate: {arena.total} bytes"
        f" (head {arena.head}, temporaries {arena.prepare_peak}, tail {arena.tail_margin});"
        f" numeric kind: {card.numeric_kind}"
    )
