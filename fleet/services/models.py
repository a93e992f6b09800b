"""Model cards: inspect each ``.tflite`` artifact once, keep its card and drift reference.

A card is made when a model is uploaded (media type ``application/vnd.tflite`` or the
``TFL3`` file identifier) and, failing that, when a release names the model. Inspection
reads the blob store with the pure-Python parser (``fleet.inspection``), never TensorFlow.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from fleet.domain.model_card import ModelReference, StoredModel
from fleet.inspection import DEFAULT_LIMITS, ModelRejected, inspect_model
from fleet.services.errors import InvalidInput, ModelRefused, NotFoundError
from fleet.store import AlreadyExists, BlobStore, UnitOfWork

__all__ = [
    "TFLITE_MEDIA_TYPE",
    "card_for_upload",
    "ensure_model_card",
    "get_model",
    "looks_like_tflite",
    "register_reference",
]

TFLITE_MEDIA_TYPE = "application/vnd.tflite"
_IDENTIFIER = b"TFL3"  # bytes 4..8 of a .tflite flatbuffer
_log = structlog.get_logger(__name__)


def looks_like_tflite(blobs: BlobStore, sha256: str, media_type: str) -> bool:
    if media_type.split(";", 1)[0].strip().lower() == TFLITE_MEDIA_TYPE:
        return True
    return b"".join(blobs.open_range(sha256, 0, 8))[4:8] == _IDENTIFIER


def ensure_model_card(
    uow: UnitOfWork, blobs: BlobStore, sha256: str, *, now: datetime
) -> StoredModel:
    """The model's stored card, inspecting the blob first if there is none yet.

    Works inside the caller's unit of work; raises ModelRefused with inspection's code.
    """
    stored = uow.model_cards.get(sha256)
    if stored is not None:
        return stored
    # One byte past the cap, so an oversized model is refused as too_large, not cut short.
    data = b"".join(blobs.open_range(sha256, 0, DEFAULT_LIMITS.max_file_bytes + 1))
    try:
        card = inspect_model(data)
    except ModelRejected as exc:
        raise ModelRefused(f"model {sha256}: {exc.message}", code=exc.code.value) from exc
    stored = StoredModel(sha256=sha256, card=card, created_at=now)
    try:
        uow.model_cards.add(stored)
    except AlreadyExists:
        # Another request inspected the same model meanwhile; the card is the same.
        return uow.model_cards.get(sha256) or stored
    return stored


def card_for_upload(
    uow: UnitOfWork, blobs: BlobStore, sha256: str, media_type: str, *, now: datetime
) -> StoredModel | None:
    """A card for an uploaded model, or None for anything else or a model inspection refuses.

    An upload stays content-agnostic: a refused model is still stored as bytes, and the
    release that names it is refused with the inspection's code.
    """
    if not looks_like_tflite(blobs, sha256, media_type):
        return None
    try:
        return ensure_model_card(uow, blobs, sha256, now=now)
    except ModelRefused as exc:
        _log.info("model_not_inspectable", sha256=sha256, code=exc.code, detail=exc.detail)
        return None


def register_reference(
    uow: UnitOfWork,
    blobs: BlobStore,
    sha256: str,
    reference: ModelReference,
    *,
    actor: str,
    now: datetime,
) -> StoredModel:
    """Keep the reference histograms the toolkit measured through this model."""
    if reference.model_sha256 != sha256:
        raise InvalidInput(f"the reference is for model {reference.model_sha256}, not {sha256}")
    with uow:
        if uow.artifacts.get(sha256) is None:
            raise NotFoundError(f"no artifact {sha256}; upload the model first")
        stored = ensure_model_card(uow, blobs, sha256, now=now)
        uow.model_cards.set_reference(sha256, reference)
        uow.audit.append(
            at=now,
            actor=actor,
            action="model.reference",
            subject=f"artifact:{sha256}",
            detail={"task": reference.task, "size": reference.size},
        )
        uow.commit()
    return StoredModel(
        sha256=sha256, card=stored.card, created_at=stored.created_at, reference=reference
    )


def get_model(uow: UnitOfWork, sha256: str) -> StoredModel:
    with uow:
        stored = uow.model_cards.get(sha256)
    if stored is None:
        raise NotFoundError(f"no model card for {sha256}: not an uploaded .tflite model")
    return stored
