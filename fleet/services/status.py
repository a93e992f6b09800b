"""Ingesting device status: verified against the enrolled key, then recorded.

Messages arrive in batches (one transaction per batch keeps the database off the hot
path); each message is judged on its own, and a refused one is counted, never stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fleet.domain.records import InstalledComponent, StatusEvent
from fleet.domain.replay_window import lowest_refused
from fleet.services.device_auth import DeviceMessageRefused, verify_device_message
from fleet.store import AlreadyExists, UnitOfWork
from schemas import DocumentError, PublicKey, StatusReport

__all__ = ["IncomingMessage", "StatusOutcome", "ingest_status_batch"]


@dataclass(frozen=True)
class IncomingMessage:
    device_id: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True)
class StatusOutcome:
    device_id: str
    accepted: bool
    reason: str | None = None  # a stable code when refused
    report: StatusReport | None = None
    late: bool = False  # recorded in the history, but a later report holds the state


def _judge(uow: UnitOfWork, message: IncomingMessage) -> StatusOutcome:
    device = uow.devices.get(message.device_id)
    if device is None:
        return StatusOutcome(message.device_id, False, "unknown_device")
    if device.revoked_at is not None:
        return StatusOutcome(device.id, False, "revoked")
    try:
        report = verify_device_message(
            message.payload,
            device_id=device.id,
            key=PublicKey(public=device.public_key_hex),
            last_counter=lowest_refused(device.status_counter),
            model=StatusReport,
        )
    except (DeviceMessageRefused, DocumentError) as exc:
        return StatusOutcome(device.id, False, exc.code)
    try:
        uow.status_events.append(
            StatusEvent(
                device_id=device.id,
                counter=report.counter,
                state=report.state,
                received_at=message.received_at,
                release_digest=report.release_digest,
                error_code=report.error_code,
                detail=report.detail,
            )
        )
    except AlreadyExists:
        return StatusOutcome(device.id, False, "replayed")
    # The history takes a late report; the device's state is its newest report's. The
    # counter check inside the update keeps that true against a concurrent replica.
    current = uow.devices.update_reported(
        device.id,
        counter=report.counter,
        seen_at=message.received_at,
        state=report.state,
        running_release_digest=report.running_release_digest,
        components=[
            InstalledComponent(c.kind, c.version, c.security_version) for c in report.components
        ],
    )
    if not current:
        return StatusOutcome(device.id, True, report=report, late=True)
    return StatusOutcome(device.id, True, report=report)


def ingest_status_batch(
    uow: UnitOfWork, messages: Sequence[IncomingMessage]
) -> list[StatusOutcome]:
    """Judge and record each message, in one transaction; the outcomes in device-id order.

    Device rows are updated in device-id order (a stable sort: one device's messages keep
    their arrival order), the order every other batch writer takes them in, so two
    replicas ingesting overlapping batches queue on each other instead of deadlocking.
    The rows are locked before any history is written, since a late report writes the
    history without updating its row.
    """
    with uow:
        uow.devices.lock(m.device_id for m in messages)
        outcomes = [_judge(uow, m) for m in sorted(messages, key=lambda m: m.device_id)]
        uow.commit()
    return outcomes
