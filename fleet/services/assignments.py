"""Assigning a release to devices: one signed director manifest each, via the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fleet.domain.eligibility import below_minimum_firmware
from fleet.domain.records import Device, DirectorRecord, Release
from fleet.services.director import Director, DirectorDecision
from fleet.services.errors import ClassMismatch, ConflictError, NotFoundError
from fleet.services.releases import refuse_untrusted
from fleet.store import UnitOfWork
from schemas import Action, Calibration, RootMetadata

__all__ = ["assign_release", "issue_directions"]


def _calibration_of(uow: UnitOfWork, device_id: str) -> Calibration | None:
    latest = uow.calibrations.latest(device_id)
    if latest is None:
        return None
    return Calibration(version=latest.version, sha256=latest.sha256, length=latest.length)


def issue_directions(
    uow: UnitOfWork,
    director: Director,
    release: Release,
    devices: Sequence[Device],
    *,
    now: datetime,
    action: Action = Action.INSTALL,
    rollout_id: str | None = None,
    wave: int | None = None,
) -> list[DirectorRecord]:
    """Inside the caller's transaction: sign and queue one manifest per device."""
    records = []
    for device in devices:
        if device.device_class != release.device_class:
            raise ClassMismatch(
                f"release {release.name} {release.version} is for {release.device_class!r}; "
                f"device {device.id} is {device.device_class!r}"
            )
        decision = DirectorDecision(
            device_id=device.id,
            release_digest=release.digest,
            action=action,
            calibration=_calibration_of(uow, device.id),
            rollout_id=rollout_id,
            wave=wave,
        )
        sequence = uow.director.next_sequence(device.id)
        envelope = director.sign(decision, sequence=sequence, now=now)
        manifest_expires = now + director.ttl
        record = DirectorRecord(
            device_id=device.id,
            sequence=sequence,
            release_digest=release.digest,
            action=action,
            issued_at=now,
            expires_at=manifest_expires,
            envelope_json=envelope.to_bytes().decode(),
            rollout_id=rollout_id,
            wave=wave,
        )
        uow.director.add(record)
        records.append(record)
    return records


def assign_release(
    uow: UnitOfWork,
    director: Director,
    release_digest: str,
    device_ids: Sequence[str],
    *,
    root: RootMetadata,
    actor: str,
    now: datetime,
    detach_from_rollouts: bool = False,
) -> list[DirectorRecord]:
    """Direct assignment (outside any rollout): all devices or none.

    A device whose reported firmware is below the release's signed
    ``min_firmware_version`` (or never reported one) is refused (409 ``firmware_too_old``,
    naming each device and its version). A device held by an active rollout is refused
    (409 ``device_in_rollout``, naming the rollout), so an assignment cannot go around a
    rollout's gates; with ``detach_from_rollouts`` it is taken out of that rollout first
    (audited), and the rollout's counts and rollback leave it alone from then on. A
    release whose signatures ``root`` no longer accepts is refused (409
    ``release_untrusted``).
    """
    with uow:
        release = uow.releases.get(release_digest)
        if release is None:
            raise NotFoundError(f"release {release_digest} is not registered")
        refuse_untrusted(release, root)
        devices = []
        for device_id in dict.fromkeys(device_ids):
            device = uow.devices.get(device_id)
            if device is None:
                raise NotFoundError(f"device {device_id!r} is not enrolled")
            devices.append(device)
        _refuse_revoked(devices)
        _refuse_old_firmware(release, devices)
        _leave_rollouts(uow, [d.id for d in devices], detach_from_rollouts, actor, now)
        records = issue_directions(uow, director, release, devices, now=now)
        uow.audit.append(
            at=now,
            actor=actor,
            action="release.assign",
            subject=f"release:{release_digest}",
            detail={"count": len(devices), "devices": [d.id for d in devices[:20]]},
        )
        uow.commit()
    return records


def _refuse_revoked(devices: Sequence[Device]) -> None:
    revoked = [d.id for d in devices if d.revoked_at is not None]
    if revoked:
        raise ConflictError(
            f"revoked devices get no releases: {revoked[:5]}",
            code="device_revoked",
            extra={"revoked": revoked},
        )


def _refuse_old_firmware(release: Release, devices: Sequence[Device]) -> None:
    minimum = release.manifest().constraints.min_firmware_version
    too_old = below_minimum_firmware(devices, minimum)
    if not too_old:
        return
    named = ", ".join(
        f"{device} ({version or 'never reported'})" for device, version in too_old.items()
    )
    raise ConflictError(
        f"release {release.name} {release.version} needs firmware {minimum} or later; "
        f"below it: {named}",
        code="firmware_too_old",
        extra={
            "min_firmware_version": minimum,
            "refused": {
                device: {"firmware_version": version} for device, version in too_old.items()
            },
        },
    )


def _leave_rollouts(
    uow: UnitOfWork, device_ids: Sequence[str], detach: bool, actor: str, now: datetime
) -> None:
    held = uow.rollouts.claims(device_ids)
    if not held:
        return
    if not detach:
        named = ", ".join(f"{device} (rollout {rollout})" for device, rollout in held.items())
        raise ConflictError(
            f"devices in an active rollout: {named}; assign through the rollout, or ask "
            "to detach them from it",
            code="device_in_rollout",
            extra={"rollouts": held},
        )
    for device_id, rollout_id in held.items():
        uow.rollouts.detach(device_id)
        uow.audit.append(
            at=now,
            actor=actor,
            action="rollout.detach",
            subject=f"rollout:{rollout_id}",
            detail={"device": device_id, "reason": "direct assignment"},
        )
