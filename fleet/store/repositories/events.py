"""Append-only histories: device status events and the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from fleet.domain.records import AuditEvent, StatusEvent
from fleet.store.repositories.base import SqlRepository
from fleet.store.tables import AuditEventRow, StatusEventRow
from schemas import DeviceState

__all__ = ["SqlAuditLog", "SqlStatusEventRepository"]


class SqlStatusEventRepository(SqlRepository):
    def append(self, event: StatusEvent) -> None:
        self._insert(
            [
                StatusEventRow(
                    device_id=event.device_id,
                    counter=event.counter,
                    state=event.state.value,
                    release_digest=event.release_digest,
                    error_code=event.error_code,
                    detail=event.detail,
                    received_at=event.received_at,
                )
            ]
        )

    def history(
        self, device_id: str, *, since: datetime | None = None, limit: int = 100
    ) -> Sequence[StatusEvent]:
        query = (
            select(StatusEventRow)
            .where(col(StatusEventRow.device_id) == device_id)
            .order_by(col(StatusEventRow.received_at).desc(), col(StatusEventRow.counter).desc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(col(StatusEventRow.received_at) >= since)
        return [_status(row) for row in self._session.exec(query)]


class SqlAuditLog(SqlRepository):
    """Append and read only; an audit log that can be edited proves nothing."""

    def append(
        self, *, at: datetime, actor: str, action: str, subject: str, detail: dict[str, Any]
    ) -> AuditEvent:
        row = AuditEventRow(at=at, actor=actor, action=action, subject=subject, detail=detail)
        self._insert([row])
        return _audit(row)

    def read(
        self, *, subject: str | None = None, after_id: int | None = None, limit: int = 100
    ) -> Sequence[AuditEvent]:
        query = select(AuditEventRow).order_by(col(AuditEventRow.id)).limit(limit)
        if subject is not None:
            query = query.where(col(AuditEventRow.subject) == subject)
        if after_id is not None:
            query = query.where(col(AuditEventRow.id) > after_id)
        return [_audit(row) for row in self._session.exec(query)]


def _status(row: StatusEventRow) -> StatusEvent:
    return StatusEvent(
        device_id=row.device_id,
        counter=row.counter,
        state=DeviceState(row.state),
        received_at=row.received_at,
        release_digest=row.release_digest,
        error_code=row.error_code,
        detail=row.detail,
    )


def _audit(row: AuditEventRow) -> AuditEvent:
    if row.id is None:
        raise RuntimeError("an audit row read back without an id was never inserted")
    return AuditEvent(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        detail=dict(row.detail),
    )
