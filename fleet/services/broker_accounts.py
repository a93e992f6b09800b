"""Devices' broker logins, kept in step with enrollment and revocation.

When the server manages the broker's accounts (``FLEET_BROKER_ACCOUNTS=dynsec``), each
enrolled device gets a login of its own: username and client id = its device id, a
random password handed out once, and access to ``tf/d/{its id}/#`` only. The change is
queued in the transaction that enrolls (or revokes) the device and applied to the
broker afterwards (``sync_broker_accounts``, run by a worker), so the database and the
broker never disagree for longer than the broker is unreachable, and a crash between
the two loses nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from fleet.domain.records import BrokerAccountChange, Device
from fleet.services.errors import ConflictError, NotFoundError
from fleet.store import UnitOfWork

__all__ = [
    "CREATE",
    "DELETE",
    "DISABLE",
    "BrokerAccounts",
    "BrokerLogin",
    "enrolled_device",
    "issue_broker_login",
    "pending_broker_account_changes",
    "queue_broker_logins",
    "sync_broker_accounts",
    "unrevoked_device",
]

CREATE = "create"
DISABLE = "disable"
DELETE = "delete"


class BrokerAccounts(Protocol):
    """The broker's account store (``fleet.transports.dynsec``)."""

    def apply(self, changes: Sequence[BrokerAccountChange]) -> None:
        """Apply every change, in order, idempotently; raise ``TransportError`` if the
        broker did not confirm them all."""
        ...


@dataclass(frozen=True)
class BrokerLogin:
    """What a device needs to log in to the broker; the password is shown only once."""

    username: str
    client_id: str
    password: str


def _new_password() -> str:
    return secrets.token_urlsafe(24)  # 192 bits


def queue_broker_logins(
    uow: UnitOfWork, device_ids: Sequence[str], *, now: datetime
) -> list[BrokerLogin]:
    """Queue a new login for each device, inside the caller's transaction."""
    logins = [BrokerLogin(d, d, _new_password()) for d in device_ids]
    uow.broker_accounts.queue([(x.username, CREATE, x.password) for x in logins], at=now)
    return logins


def issue_broker_login(
    uow: UnitOfWork, device_id: str, *, actor: str, now: datetime
) -> BrokerLogin:
    """A new password for an enrolled, unrevoked device (the old one stops working once
    the broker has the new one); audited without the password."""
    with uow:
        unrevoked_device(uow, device_id)
        (login,) = queue_broker_logins(uow, [device_id], now=now)
        uow.audit.append(
            at=now, actor=actor, action="device.broker_login", subject=device_id, detail={}
        )
        uow.commit()
    return login


def sync_broker_accounts(
    uow: UnitOfWork, accounts: BrokerAccounts, *, now: Callable[[], datetime], limit: int = 100
) -> int:
    """Apply the oldest queued login changes to the broker; how many were applied.

    A hundred at a time: the rows stay locked until the broker has confirmed them, and
    Mosquitto's plugin slows as logins grow (113 ms per new login at 2,900, measured),
    so a bulk enrollment goes through in transactions of seconds, not minutes."""
    with uow:
        changes = uow.broker_accounts.pending(limit=limit)
        if not changes:
            return 0
        accounts.apply(changes)
        uow.broker_accounts.mark_applied([c.id for c in changes], at=now())
        uow.commit()
    return len(changes)


def pending_broker_account_changes(uow: UnitOfWork) -> int:
    with uow:
        return uow.broker_accounts.count_pending()


def enrolled_device(uow: UnitOfWork, device_id: str) -> Device:
    device = uow.devices.get(device_id)
    if device is None:
        raise NotFoundError(f"device {device_id!r} is not enrolled")
    return device


def unrevoked_device(uow: UnitOfWork, device_id: str) -> Device:
    """An enrolled device that may be given new credentials; 409 if it was revoked."""
    device = enrolled_device(uow, device_id)
    if device.revoked_at is not None:
        raise ConflictError(
            f"device {device_id!r} was revoked; enroll it again under a new id",
            code="device_revoked",
        )
    return device
