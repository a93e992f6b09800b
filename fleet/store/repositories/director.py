"""Director decisions: sequence allocation and the MQTT outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import col, select

from fleet.domain.records import DirectorRecord
from fleet.store.errors import NotFound
from fleet.store.repositories.base import SqlRepository
from fleet.store.tables import DeviceRow, DirectorRow
from schemas import Action

__all__ = ["SqlDirectorOutbox"]


class SqlDirectorOutbox(SqlRepository):
    def next_sequence(self, device_id: str) -> int:
        # UPDATE ... RETURNING increments and reads in one statement and keeps the
        # device row locked until commit: a second replica's allocation waits for it
        # and then sees the committed value (PostgreSQL re-reads the row it waited on;
        # SQLite transactions already hold the write lock, see db.py).
        sequence = self._session.exec(
            update(DeviceRow)
            .where(col(DeviceRow.id) == device_id)
            .values(director_sequence=col(DeviceRow.director_sequence) + 1)
            .returning(col(DeviceRow.director_sequence))
        ).scalar_one_or_none()
        if sequence is None:
            raise NotFound(f"no device {device_id!r}")
        return int(sequence)

    def add(self, record: DirectorRecord) -> None:
        self._insert([_row(record)])

    def latest(self, device_id: str) -> DirectorRecord | None:
        row = self._session.exec(
            select(DirectorRow)
            .where(col(DirectorRow.device_id) == device_id)
            .order_by(col(DirectorRow.sequence).desc())
            .limit(1)
        ).first()
        return None if row is None else _record(row)

    def unpublished(self, *, limit: int = 100) -> Sequence[DirectorRecord]:
        rows = self._session.exec(
            select(DirectorRow)
            .where(col(DirectorRow.published_at).is_(None))
            .order_by(col(DirectorRow.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_record(row) for row in rows]

    def count_unpublished(self) -> int:
        rows = self._session.exec(
            select(func.count())
            .select_from(DirectorRow)
            .where(col(DirectorRow.published_at).is_(None))
        )
        return int(rows.one())

    def mark_published(self, device_id: str, sequence: int, *, at: datetime) -> None:
        result = self._session.exec(
            update(DirectorRow)
            .where(col(DirectorRow.device_id) == device_id, col(DirectorRow.sequence) == sequence)
            .values(published_at=at)
        )
        if result.rowcount == 0:
            raise NotFound(f"no director record {sequence} for device {device_id!r}")


def _row(record: DirectorRecord) -> DirectorRow:
    return DirectorRow(
        device_id=record.device_id,
        sequence=record.sequence,
        release_digest=record.release_digest,
        action=record.action.value,
        rollout_id=record.rollout_id,
        wave=record.wave,
        issued_at=record.issued_at,
        expires_at=record.expires_at,
        envelope_json=record.envelope_json,
        published_at=record.published_at,
    )


def _record(row: DirectorRow) -> DirectorRecord:
    return DirectorRecord(
        device_id=row.device_id,
        sequence=row.sequence,
        release_digest=row.release_digest,
        action=Action(row.action),
        rollout_id=row.rollout_id,
        wave=row.wave,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        envelope_json=row.envelope_json,
        published_at=row.published_at,
    )
