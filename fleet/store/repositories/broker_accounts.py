"""The broker account outbox: queued login changes and what has been applied."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import col, select

from fleet.domain.records import BrokerAccountChange
from fleet.store.repositories.base import SqlRepository
from fleet.store.tables import BrokerAccountRow

__all__ = ["SqlBrokerAccountOutbox"]


class SqlBrokerAccountOutbox(SqlRepository):
    def queue(self, changes: Sequence[tuple[str, str, str | None]], *, at: datetime) -> None:
        """(device id, action, password or None) each, applied in this order."""
        self._insert(
            [
                BrokerAccountRow(device_id=d, action=a, password=p, queued_at=at)
                for d, a, p in changes
            ]
        )

    def count_pending(self) -> int:
        rows = self._session.exec(
            select(func.count())
            .select_from(BrokerAccountRow)
            .where(col(BrokerAccountRow.applied_at).is_(None))
        )
        return int(rows.one())

    def pending(self, *, limit: int = 500) -> Sequence[BrokerAccountChange]:
        """The oldest changes not yet applied, locked against another replica's sync."""
        rows = self._session.exec(
            select(BrokerAccountRow)
            .where(col(BrokerAccountRow.applied_at).is_(None))
            .order_by(col(BrokerAccountRow.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [
            BrokerAccountChange(
                id=int(row.id or 0), device_id=row.device_id, action=row.action,
                password=row.password,
            )
            for row in rows
        ]  # fmt: skip

    def mark_applied(self, ids: Collection[int], *, at: datetime) -> None:
        """Applied: the password is dropped, the record of the change stays."""
        if ids:
            self._session.exec(
                update(BrokerAccountRow)
                .where(col(BrokerAccountRow.id).in_(list(ids)))
                .values(applied_at=at, password=None)
            )
