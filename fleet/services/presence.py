"""Device presence from the broker's retained ``online`` topic and last will."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fleet.store import UnitOfWork

__all__ = ["record_presence"]

_STATES = {b"online": True, b"offline": False}


def record_presence(uow: UnitOfWork, updates: Sequence[tuple[str, bytes, datetime]]) -> int:
    """Apply presence updates for enrolled devices; return how many were applied.

    In device-id order (stable, so a device's last update still wins), as status ingest
    writes device rows: concurrent batches on two replicas cannot deadlock.
    """
    applied = 0
    with uow:
        for device_id, payload, at in sorted(updates, key=lambda update: update[0]):
            online = _STATES.get(payload.strip())
            if online is None or uow.devices.get(device_id) is None:
                continue
            uow.devices.set_online(device_id, online, at=at)
            applied += 1
        uow.commit()
    return applied
