"""A trained model's bundle: the artifacts of a release and what the toolkit measured.

A bundle directory holds::

    model.tflite      the fully int8 model
    thresholds.json   the thresholds component (schemas.components.Thresholds, RFC 8785)
    model_card.json   what fleet.inspection reads from the model (ModelCard)
    reference.json    the reference set's histograms and accuracies (ReferenceProfile)

Building and evaluating a bundle needs LiteRT, not TensorFlow; only training does.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from fleet.domain.model_card import ModelCard
from fleet.inspection import inspect_model
from fleet.toolkit.host import HostModel
from fleet.toolkit.reference import (
    ReferenceProfile,
    choose_input_bins,
    choose_output_bins,
    input_summaries,
    observed_histograms,
    reference_profile,
)
from fleet.toolkit.scoring import Outcomes, outcomes
from fleet.toolkit.sensors import FieldConditions, Split, Task, split
from fleet.toolkit.thresholds import load_thresholds, make_thresholds, thresholds_bytes
from schemas.components import AnomalyDecision, Thresholds
from schemas.errors import DocumentError

if TYPE_CHECKING:
    from fleet.toolkit.train import TrainedModel

__all__ = [
    "CARD_FILE",
    "MODEL_FILE",
    "REFERENCE_FILE",
    "THRESHOLDS_FILE",
    "Bundle",
    "BundleError",
    "BundleEvaluation",
    "build_bundle",
    "evaluate_bundle",
    "read_bundle",
    "write_bundle",
]

MODEL_FILE = "model.tflite"
THRESHOLDS_FILE = "thresholds.json"
CARD_FILE = "model_card.json"
REFERENCE_FILE = "reference.json"


class BundleError(ValueError):
    """A bundle directory is missing a file, or its files do not belong together."""


@dataclass(frozen=True)
class Bundle:
    model: bytes
    thresholds: Thresholds
    card: ModelCard
    reference: ReferenceProfile

    @property
    def task(self) -> Task:
        return self.reference.task


def _run(model: HostModel, thresholds: Thresholds, windows: npt.ArrayLike) -> Outcomes:
    decision = thresholds.decision
    max_score = decision.max_score if isinstance(decision, AnomalyDecision) else None
    return outcomes(model, np.asarray(windows), max_score=max_score)


def build_bundle(trained: TrainedModel) -> Bundle:
    """Choose the histogram bins, fill in the thresholds and profile the reference set."""
    task, data = trained.task, trained.reference
    max_score = trained.decision if task is Task.VIBRATION else None
    seen = outcomes(HostModel(trained.tflite), data.windows, max_score=max_score)
    summaries = input_summaries(data.windows)
    thresholds = make_thresholds(
        trained.tflite,
        task,
        trained.decision,
        inputs=choose_input_bins(summaries),
        output=choose_output_bins(task, seen.statistic),
    )
    profile = reference_profile(
        thresholds,
        summaries,
        seen,
        task=task,
        seed=trained.config.seed,
        float_accuracy=trained.evaluation.float_accuracy,
        int8_accuracy=trained.evaluation.int8_accuracy,
    )
    return Bundle(trained.tflite, thresholds, inspect_model(trained.tflite), profile)


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_bundle(bundle: Bundle, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / MODEL_FILE, bundle.model)
    _atomic_write(directory / THRESHOLDS_FILE, thresholds_bytes(bundle.thresholds))
    _atomic_write(directory / CARD_FILE, bundle.card.model_dump_json(indent=2).encode())
    _atomic_write(directory / REFERENCE_FILE, bundle.reference.model_dump_json(indent=2).encode())


def _read(directory: Path, name: str) -> bytes:
    try:
        return (directory / name).read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {name} in {directory}: {exc.strerror}") from exc


def read_bundle(directory: Path) -> Bundle:
    """A bundle whose files parse strictly and were made for the same model."""
    model = _read(directory, MODEL_FILE)
    try:
        thresholds = load_thresholds(_read(directory, THRESHOLDS_FILE))
        card = ModelCard.model_validate_json(_read(directory, CARD_FILE))
        reference = ReferenceProfile.model_validate_json(_read(directory, REFERENCE_FILE))
    except (DocumentError, ValidationError) as exc:
        raise BundleError(f"{directory}: {exc}") from exc
    digest = hashlib.sha256(model).hexdigest()
    for name, claimed in [
        (THRESHOLDS_FILE, thresholds.model_sha256),
        (REFERENCE_FILE, reference.model_sha256),
    ]:
        if claimed != digest:
            raise BundleError(f"{name} is for model {claimed[:12]}, not {digest[:12]}")
    if card.flash_bytes != len(model):
        raise BundleError(f"{CARD_FILE} describes a {card.flash_bytes}-byte model")
    return Bundle(model, thresholds, card, reference)


@dataclass(frozen=True)
class BundleEvaluation:
    size: int
    accuracy: float  # for an anomaly detector: detection accuracy
    confusion: npt.NDArray[np.int64]  # rows: true label, columns: predicted
    shifts: dict[str, float]  # total variation distance from the reference, per histogram


def evaluate_bundle(
    bundle: Bundle,
    *,
    conditions: FieldConditions = FieldConditions(),
    seed: int | None = None,
    size: int | None = None,
) -> BundleEvaluation:
    """The int8 model on held-out windows as a field under ``conditions`` reports them.

    By default these are the reference windows themselves, so a bundle evaluated with no
    drift reproduces its recorded int8 accuracy and shows no shift.
    """
    reference = bundle.reference
    data = split(
        bundle.task,
        Split.REFERENCE,
        size or reference.size,
        seed=reference.seed if seed is None else seed,
        conditions=conditions,
    )
    seen = _run(HostModel(bundle.model), bundle.thresholds, data.windows)
    labels = len(bundle.thresholds.labels)
    confusion = np.zeros((labels, labels), dtype=np.int64)
    np.add.at(confusion, (data.labels, seen.predicted), 1)
    counts = observed_histograms(bundle.thresholds, input_summaries(data.windows), seen)
    shifts = {
        name: 0.5 * float(np.abs(c / c.sum() - reference.histograms[name].proportions).sum())
        for name, c in counts.items()
    }
    return BundleEvaluation(
        size=len(data),
        accuracy=float(np.mean(seen.predicted == data.labels)),
        confusion=confusion,
        shifts=shifts,
    )
