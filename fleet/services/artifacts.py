"""Use cases for artifacts (content-addressed blobs) and per-device calibration."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from fleet.domain.records import Artifact, Calibration
from fleet.services.errors import ArtifactTooLarge, NotFoundError
from fleet.services.models import card_for_upload
from fleet.store import BlobStore, BlobTooLarge, UnitOfWork

__all__ = ["add_calibration_in", "put_blob", "store_artifact", "store_calibration"]


def put_blob(blobs: BlobStore, chunks: Iterable[bytes], max_length: int) -> tuple[str, int]:
    """Store bytes content-addressed (an unreferenced blob is harmless); sha256, length."""
    try:
        return blobs.put_stream(chunks, max_length=max_length)
    except BlobTooLarge as exc:
        raise ArtifactTooLarge(f"artifact exceeds {max_length} bytes") from exc


def store_artifact(
    uow: UnitOfWork,
    blobs: BlobStore,
    chunks: Iterable[bytes],
    *,
    media_type: str,
    max_length: int,
    actor: str,
    now: datetime,
) -> tuple[Artifact, bool]:
    """Stream an upload into the blob store; return the artifact and whether it is new.

    The blob is written (and fsynced) before the row, so a row never names missing bytes;
    a crash in between leaves an unreferenced blob that a re-upload simply reuses. A
    ``.tflite`` model gets its model card in the same transaction.
    """
    sha256, length = put_blob(blobs, chunks, max_length)
    with uow:
        existing = uow.artifacts.get(sha256)
        if existing is not None:
            return existing, False
        artifact = Artifact(sha256=sha256, length=length, media_type=media_type, created_at=now)
        uow.artifacts.add(artifact)
        card_for_upload(uow, blobs, sha256, media_type, now=now)
        uow.audit.append(
            at=now,
            actor=actor,
            action="artifact.upload",
            subject=f"artifact:{sha256}",
            detail={"length": length, "media_type": media_type},
        )
        uow.commit()
    return artifact, True


def store_calibration(
    uow: UnitOfWork,
    blobs: BlobStore,
    device_id: str,
    chunks: Iterable[bytes],
    *,
    max_length: int,
    actor: str,
    now: datetime,
) -> Calibration:
    """A new calibration version for one device; the next assignment delivers it."""
    sha256, length = put_blob(blobs, chunks, max_length)
    with uow:
        calibration = add_calibration_in(uow, device_id, sha256, length, actor=actor, now=now)
        uow.commit()
    return calibration


def add_calibration_in(
    uow: UnitOfWork, device_id: str, sha256: str, length: int, *, actor: str, now: datetime
) -> Calibration:
    """Record stored bytes as the device's next calibration version, inside the caller's
    transaction (which commits it)."""
    if uow.devices.get(device_id) is None:
        raise NotFoundError(f"device {device_id!r} is not enrolled")
    latest = uow.calibrations.latest(device_id)
    calibration = Calibration(
        device_id=device_id,
        version=(latest.version + 1) if latest else 1,
        sha256=sha256,
        length=length,
    )
    uow.calibrations.add(calibration)
    if uow.artifacts.get(sha256) is None:
        uow.artifacts.add(
            Artifact(
                sha256=sha256,
                length=length,
                media_type="application/octet-stream",
                created_at=now,
            )
        )
    uow.audit.append(
        at=now,
        actor=actor,
        action="calibration.upload",
        subject=f"device:{device_id}",
        detail={"version": calibration.version, "sha256": sha256, "length": length},
    )
    return calibration
