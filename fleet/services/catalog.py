"""Use cases for device classes and device enrollment."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from fleet.domain.records import Device, DeviceClass
from fleet.domain.server_names import SERVER_NAME_PREFIX, is_server_name
from fleet.services.broker_accounts import BrokerLogin, queue_broker_logins
from fleet.services.errors import ConflictError, InvalidInput, NotFoundError
from fleet.store import AlreadyExists, UnitOfWork
from schemas import PublicKey

__all__ = [
    "Enrolled",
    "Enrollment",
    "create_device_class",
    "enroll_devices",
    "enroll_in",
    "set_device_tags",
]


@dataclass(frozen=True)
class Enrollment:
    device_id: str
    device_class: str
    public_key_hex: str
    tags: frozenset[str] = frozenset()


def create_device_class(
    uow: UnitOfWork, device_class: DeviceClass, *, actor: str, now: datetime
) -> DeviceClass:
    with uow:
        if uow.device_classes.get(device_class.name) is not None:
            raise ConflictError(f"device class {device_class.name!r} exists")
        uow.device_classes.add(device_class)
        uow.audit.append(
            at=now,
            actor=actor,
            action="device_class.create",
            subject=f"device_class:{device_class.name}",
            detail={"ram_bytes": device_class.ram_bytes, "flash_bytes": device_class.flash_bytes},
        )
        uow.commit()
    return device_class


def _device(enrollment: Enrollment, now: datetime) -> Device:
    try:
        key = PublicKey(public=enrollment.public_key_hex)
    except ValueError as exc:
        raise InvalidInput(
            f"device {enrollment.device_id}: public key must be 64 hex characters"
        ) from exc
    return Device(
        id=enrollment.device_id,
        device_class=enrollment.device_class,
        public_key_hex=key.public,
        keyid=key.keyid,
        enrolled_at=now,
        tags=enrollment.tags,
    )


def _refuse_repeats(what: str, values: Sequence[str]) -> None:
    repeated = sorted(value for value, n in Counter(values).items() if n > 1)
    if repeated:
        # 409, not 422: each entry is valid on its own (a schema cannot say "unique by
        # id"); the entries conflict with each other, as an enrolled id conflicts.
        raise ConflictError(
            f"{what} repeated in the batch: {repeated[:5]}", code="repeated_in_batch"
        )


def _refuse_server_names(ids: Sequence[str]) -> None:
    taken = [device_id for device_id in ids if is_server_name(device_id)]
    if taken:
        raise InvalidInput(
            f"device ids starting with {SERVER_NAME_PREFIX!r} are the server's own broker "
            f"logins and client ids: {taken[:5]}",
            code="reserved_device_id",
        )


@dataclass(frozen=True)
class Enrolled:
    devices: list[Device]
    broker_logins: list[BrokerLogin]
    """One per device when the server manages broker logins; their passwords are not
    kept, so this is the only time they are shown."""


def enroll_devices(
    uow: UnitOfWork,
    enrollments: Sequence[Enrollment],
    *,
    actor: str,
    now: datetime,
    broker_logins: bool = False,
) -> Enrolled:
    """Enroll all or none: one bad entry refuses the whole batch, naming it. With
    ``broker_logins`` each device's broker login is queued in the same transaction."""
    with uow:
        enrolled = enroll_in(uow, enrollments, actor=actor, now=now, broker_logins=broker_logins)
        uow.commit()
    return enrolled


def enroll_in(
    uow: UnitOfWork,
    enrollments: Sequence[Enrollment],
    *,
    actor: str,
    now: datetime,
    broker_logins: bool,
) -> Enrolled:
    """``enroll_devices`` inside the caller's transaction (which commits it)."""
    ids = [e.device_id for e in enrollments]
    _refuse_repeats("device ids", ids)
    _refuse_server_names(ids)
    devices = [_device(e, now) for e in enrollments]
    _refuse_repeats("public keys", [d.public_key_hex for d in devices])
    for device_class in {d.device_class for d in devices}:
        if uow.device_classes.get(device_class) is None:
            raise NotFoundError(f"device class {device_class!r} does not exist")
    existing = [d.id for d in devices if uow.devices.get(d.id) is not None]
    if existing:
        raise ConflictError(f"devices already enrolled: {existing[:5]}")
    try:
        uow.devices.add_many(devices)
    except AlreadyExists as exc:
        raise ConflictError(
            "a device's public key is already enrolled for another device "
            "(or one of its ids was enrolled concurrently)"
        ) from exc
    logins = queue_broker_logins(uow, ids, now=now) if broker_logins else []
    uow.audit.append(
        at=now,
        actor=actor,
        action="device.enroll",
        subject="devices",
        detail={"count": len(devices), "ids": ids[:20]},
    )
    return Enrolled(devices, logins)


def set_device_tags(
    uow: UnitOfWork, device_id: str, tags: Collection[str], *, actor: str, now: datetime
) -> Device:
    with uow:
        if uow.devices.get(device_id) is None:
            raise NotFoundError(f"device {device_id!r} is not enrolled")
        uow.devices.set_tags(device_id, tags)
        uow.audit.append(
            at=now,
            actor=actor,
            action="device.tags",
            subject=f"device:{device_id}",
            detail={"tags": sorted(tags)},
        )
        device = uow.devices.get(device_id)
        uow.commit()
    assert device is not None
    return device
