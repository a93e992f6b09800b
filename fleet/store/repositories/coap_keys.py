"""Devices' OSCORE keys, and leases of the server's sender sequence numbers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import col, select

from fleet.store.errors import NotFound
from fleet.store.repositories.base import SqlRepository
from fleet.store.tables import CoapKeysRow
from schemas.oscore import OscoreKeys

__all__ = ["SqlCoapKeyRepository"]


class SqlCoapKeyRepository(SqlRepository):
    def replace(self, device_id: str, keys: OscoreKeys, *, at: datetime) -> None:
        """The device's keys from now on; sequence numbers start again with new keys."""
        self._session.exec(delete(CoapKeysRow).where(col(CoapKeysRow.device_id) == device_id))
        self._insert(
            [
                CoapKeysRow(
                    device_id=device_id,
                    device_kid=keys.device_kid,
                    master_secret=keys.master_secret,
                    master_salt=keys.master_salt,
                    server_id=keys.server_id,
                    issued_at=at,
                )
            ]
        )

    def by_kid(self, device_kid: str) -> tuple[str, OscoreKeys] | None:
        row = self._session.exec(
            select(CoapKeysRow).where(col(CoapKeysRow.device_kid) == device_kid)
        ).first()
        if row is None:
            return None
        keys = OscoreKeys(
            master_secret=row.master_secret,
            master_salt=row.master_salt,
            device_kid=row.device_kid,
            server_id=row.server_id,
        )
        return row.device_id, keys

    def reserve(self, device_id: str, count: int) -> range:
        """The next ``count`` sequence numbers, leased to the caller alone: the increment
        and the read are one statement, so two replicas always get disjoint ranges."""
        end = self._session.exec(
            update(CoapKeysRow)
            .where(col(CoapKeysRow.device_id) == device_id)
            .values(next_sequence=col(CoapKeysRow.next_sequence) + count)
            .returning(col(CoapKeysRow.next_sequence))
        ).scalar_one_or_none()
        if end is None:
            raise NotFound(f"device {device_id!r} has no CoAP keys")
        return range(end - count, end)

    def delete(self, device_id: str) -> None:
        self._session.exec(delete(CoapKeysRow).where(col(CoapKeysRow.device_id) == device_id))
