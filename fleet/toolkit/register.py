"""``fleet model register``: upload a bundle's model and thresholds, and its reference.

The server inspects the model as it is stored and keeps its model card; the bundle's
``reference.json`` becomes that card's reference data, the baseline drift is judged by.
A release can then name the model and thresholds by the sha256 this prints.
No TensorFlow or LiteRT is needed: the bundle is read as files and checked to belong
together before anything is sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from fleet.client import AdminClient
from fleet.domain.model_card import ModelCard, ModelReference
from schemas.components import Thresholds, parse_component
from schemas.errors import DocumentError

__all__ = [
    "BundleFilesError",
    "LocalBundle",
    "RegisteredModel",
    "read_local_bundle",
    "register_bundle",
]

MODEL_FILE, THRESHOLDS_FILE = "model.tflite", "thresholds.json"
CARD_FILE, REFERENCE_FILE = "model_card.json", "reference.json"
TFLITE = "application/vnd.tflite"


class BundleFilesError(ValueError):
    """A bundle directory is missing a file, or its files do not belong together."""


@dataclass(frozen=True)
class LocalBundle:
    model: bytes
    thresholds: bytes
    reference: bytes
    card: ModelCard

    @property
    def model_sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()


@dataclass(frozen=True)
class RegisteredModel:
    model_sha256: str
    thresholds_sha256: str
    card: ModelCard  # as the server read it


def _read(directory: Path, name: str) -> bytes:
    try:
        return (directory / name).read_bytes()
    except OSError as exc:
        raise BundleFilesError(f"cannot read {name} in {directory}: {exc.strerror}") from exc


def read_local_bundle(directory: Path) -> LocalBundle:
    bundle = LocalBundle(
        model=_read(directory, MODEL_FILE),
        thresholds=_read(directory, THRESHOLDS_FILE),
        reference=_read(directory, REFERENCE_FILE),
        card=_card(_read(directory, CARD_FILE), directory),
    )
    try:
        thresholds = parse_component(bundle.thresholds, Thresholds)
        reference = ModelReference.model_validate_json(bundle.reference)
    except (DocumentError, ValidationError) as exc:
        raise BundleFilesError(f"{directory}: {exc}") from exc
    for name, claimed in [
        (THRESHOLDS_FILE, thresholds.model_sha256),
        (REFERENCE_FILE, reference.model_sha256),
    ]:
        if claimed != bundle.model_sha256:
            raise BundleFilesError(
                f"{name} is for model {claimed[:12]}, not {bundle.model_sha256[:12]}"
            )
    return bundle


def _card(data: bytes, directory: Path) -> ModelCard:
    try:
        return ModelCard.model_validate_json(data)
    except ValidationError as exc:
        raise BundleFilesError(f"{directory / CARD_FILE}: {exc}") from exc


def register_bundle(bundle: LocalBundle, client: AdminClient) -> RegisteredModel:
    """Upload model and thresholds, then register the reference with the model's card."""
    model_sha256 = client.upload_artifact(bundle.model, media_type=TFLITE)
    thresholds_sha256 = client.upload_artifact(bundle.thresholds, media_type="application/json")
    stored = client.register_model_reference(model_sha256, bundle.reference)
    return RegisteredModel(
        model_sha256, thresholds_sha256, ModelCard.model_validate(stored["card"])
    )
