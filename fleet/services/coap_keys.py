"""Devices' OSCORE keys: issued at provisioning or on request, found by a request's kid.

The server makes the keys (a random master secret, salt and kid) and hands them out
once, in the answer that issued them; issuing again replaces them, so a device whose
keys leaked is given new ones and the old stop working. A revoked or decommissioned
device's keys open nothing.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from fleet.services.broker_accounts import unrevoked_device
from fleet.store import AlreadyExists, UnitOfWork
from schemas.oscore import OscoreKeys

__all__ = ["coap_keys_for_kid", "issue_coap_keys", "issue_coap_keys_in", "reserve_sequences"]

_KID_BYTES = 6  # of the 7 a kid may have: 2^48 kids, so a collision is a retry, not a risk
_ATTEMPTS = 3


def _new_keys() -> OscoreKeys:
    return OscoreKeys(
        master_secret=secrets.token_hex(32),
        master_salt=secrets.token_hex(8),
        device_kid=secrets.token_hex(_KID_BYTES),
        server_id="",
    )


def issue_coap_keys_in(uow: UnitOfWork, device_id: str, *, actor: str, now: datetime) -> OscoreKeys:
    """New keys for an enrolled device, inside the caller's transaction."""
    unrevoked_device(uow, device_id)
    for attempt in range(1, _ATTEMPTS + 1):
        keys = _new_keys()
        try:
            uow.coap_keys.replace(device_id, keys, at=now)
            break
        except AlreadyExists:  # another device holds that kid
            if attempt == _ATTEMPTS:
                raise
    uow.audit.append(
        at=now,
        actor=actor,
        action="device.coap_keys",
        subject=device_id,
        detail={"device_kid": keys.device_kid},  # never the secret
    )
    return keys


def issue_coap_keys(uow: UnitOfWork, device_id: str, *, actor: str, now: datetime) -> OscoreKeys:
    with uow:
        keys = issue_coap_keys_in(uow, device_id, actor=actor, now=now)
        uow.commit()
    return keys


def coap_keys_for_kid(uow: UnitOfWork, device_kid: str) -> tuple[str, OscoreKeys] | None:
    """The device and keys a request's kid names; None for an unknown kid or a device
    that was revoked."""
    with uow:
        found = uow.coap_keys.by_kid(device_kid)
        if found is None:
            return None
        device = uow.devices.get(found[0])
        if device is None or device.revoked_at is not None:
            return None
        return found


def reserve_sequences(uow: UnitOfWork, device_id: str, count: int) -> range:
    with uow:
        leased = uow.coap_keys.reserve(device_id, count)
        uow.commit()
    return leased
