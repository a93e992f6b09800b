"""Read-only use cases: what the API shows. Each opens and closes its own unit of work.

A lookup of something that does not exist raises ``NotFoundError`` naming it, so every
caller reports a missing device, release or artifact the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from fleet.domain import aggregation
from fleet.domain.records import (
    Artifact,
    AuditEvent,
    Calibration,
    Device,
    DeviceClass,
    DirectorRecord,
    Release,
    StatusEvent,
)
from fleet.services.errors import NotFoundError
from fleet.store import UnitOfWork

__all__ = [
    "device_history",
    "find_devices",
    "get_artifact",
    "get_device",
    "get_device_class",
    "get_release",
    "latest_calibration",
    "latest_direction",
    "list_artifacts",
    "list_device_classes",
    "list_releases",
    "read_audit",
    "telemetry_aggregates",
]


def list_device_classes(uow: UnitOfWork) -> Sequence[DeviceClass]:
    with uow:
        return uow.device_classes.all()


def get_device_class(uow: UnitOfWork, name: str) -> DeviceClass:
    with uow:
        device_class = uow.device_classes.get(name)
    if device_class is None:
        raise NotFoundError(f"device class {name!r} does not exist")
    return device_class


def find_devices(
    uow: UnitOfWork,
    *,
    device_class: str | None = None,
    tags: Collection[str] = (),
    release: str | None = None,
    after: str | None = None,
    limit: int,
) -> Sequence[Device]:
    """Devices matching every filter, ordered by id, starting just after ``after``."""
    with uow:
        return uow.devices.find(
            device_class=device_class,
            tags=tags,
            running_release_digest=release,
            after_id=after,
            limit=limit,
        )


def get_device(uow: UnitOfWork, device_id: str) -> Device:
    with uow:
        return _device(uow, device_id)


def device_history(uow: UnitOfWork, device_id: str, *, limit: int) -> Sequence[StatusEvent]:
    """Status events, newest first."""
    with uow:
        _device(uow, device_id)
        return uow.status_events.history(device_id, limit=limit)


def latest_direction(uow: UnitOfWork, device_id: str) -> DirectorRecord:
    with uow:
        _device(uow, device_id)
        record = uow.director.latest(device_id)
    if record is None:
        raise NotFoundError(f"device {device_id!r} has not been directed to any release")
    return record


def latest_calibration(uow: UnitOfWork, device_id: str) -> Calibration:
    with uow:
        _device(uow, device_id)
        calibration = uow.calibrations.latest(device_id)
    if calibration is None:
        raise NotFoundError(f"device {device_id!r} has no calibration")
    return calibration


def list_artifacts(uow: UnitOfWork) -> Sequence[Artifact]:
    with uow:
        return uow.artifacts.all()


def get_artifact(uow: UnitOfWork, sha256: str) -> Artifact:
    with uow:
        artifact = uow.artifacts.get(sha256)
    if artifact is None:
        raise NotFoundError(f"no artifact {sha256}")
    return artifact


def list_releases(uow: UnitOfWork, *, device_class: str | None = None) -> Sequence[Release]:
    """Newest first."""
    with uow:
        return uow.releases.find(device_class=device_class)


def get_release(uow: UnitOfWork, digest: str) -> Release:
    with uow:
        release = uow.releases.get(digest)
    if release is None:
        raise NotFoundError(f"release {digest} is not registered")
    return release


def read_audit(
    uow: UnitOfWork, *, subject: str | None = None, after: int | None = None, limit: int
) -> Sequence[AuditEvent]:
    """Oldest first, from just after ``after``: a cursor for tailing the log."""
    with uow:
        return uow.audit.read(subject=subject, after_id=after, limit=limit)


def telemetry_aggregates(
    uow: UnitOfWork, release_digest: str, *, model_version: str | None, limit: int
) -> Sequence[aggregation.Release]:
    """Released cohort aggregates of a release, oldest window first."""
    with uow:
        return uow.telemetry.find(release_digest, model_version=model_version, limit=limit)


def _device(uow: UnitOfWork, device_id: str) -> Device:
    device = uow.devices.get(device_id)
    if device is None:
        raise NotFoundError(f"device {device_id!r} is not enrolled")
    return device
