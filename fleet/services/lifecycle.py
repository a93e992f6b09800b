"""The end of a device's life: revocation (cut off now) and decommissioning (retired).

Both keep the device's row and its status history, so the audit trail and past rollouts
still name it; neither can be undone (a device trusted again is enrolled under a new
id). Broker login changes are queued in the same transaction (see
``fleet.services.broker_accounts``) when the server manages logins.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from fleet.domain.records import Device
from fleet.services.broker_accounts import DELETE, DISABLE, enrolled_device
from fleet.store import BlobStore, UnitOfWork

__all__ = ["decommission_device", "revoke_device"]

_log = structlog.get_logger(__name__)


def revoke_device(
    uow: UnitOfWork, device_id: str, *, manage_logins: bool, actor: str, now: datetime
) -> Device:
    """Cut a device off: its broker login disabled (the broker disconnects it), its
    signed status and telemetry refused from now on, and it leaves any active rollout.
    Revoking a revoked device changes nothing."""
    with uow:
        enrolled_device(uow, device_id)
        _revoke_in(uow, device_id, manage_logins=manage_logins, actor=actor, now=now)
        revoked = enrolled_device(uow, device_id)
        uow.commit()
    return revoked


def _revoke_in(
    uow: UnitOfWork, device_id: str, *, manage_logins: bool, actor: str, now: datetime
) -> None:
    if uow.devices.revoke(device_id, at=now):
        rollout_id = uow.rollouts.detach(device_id)
        if manage_logins:
            uow.broker_accounts.queue([(device_id, DISABLE, None)], at=now)
        uow.audit.append(
            at=now,
            actor=actor,
            action="device.revoke",
            subject=device_id,
            detail={"rollout": rollout_id},
        )


def decommission_device(
    uow: UnitOfWork,
    blobs: BlobStore,
    device_id: str,
    *,
    manage_logins: bool,
    actor: str,
    now: datetime,
) -> Device:
    """Retire a device: revoked first if it was not, its broker login deleted, its key,
    CoAP keys, tags and calibrations deleted (a calibration's bytes too, unless another device's
    calibration holds the same), and an audit event that keeps what it was. Its status
    history stays. Decommissioning a decommissioned device changes nothing."""
    with uow:
        device = enrolled_device(uow, device_id)
        removed: set[str] = set()
        if device.decommissioned_at is None:
            _revoke_in(uow, device_id, manage_logins=manage_logins, actor=actor, now=now)
            removed = uow.calibrations.delete_device(device_id)
            uow.coap_keys.delete(device_id)
            uow.devices.decommission(device_id, at=now)
            if manage_logins:
                uow.broker_accounts.queue([(device_id, DELETE, None)], at=now)
            uow.audit.append(
                at=now,
                actor=actor,
                action="device.decommission",
                subject=device_id,
                detail={
                    "device_class": device.device_class,
                    "keyid": device.keyid,
                    "enrolled_at": device.enrolled_at.isoformat(),
                    "running_release": device.running_release_digest,
                    "tags": sorted(device.tags),
                    "calibrations_deleted": len(removed),
                },
            )
            removed -= uow.calibrations.referenced(removed)
        retired = enrolled_device(uow, device_id)
        uow.commit()
    for sha256 in sorted(removed):  # after the commit: a crash leaves only an orphan blob
        blobs.delete(sha256)
    if removed:
        _log.info("calibration_blobs_deleted", device_id=device_id, count=len(removed))
    return retired
