"""Open telemetry windows: running noised sums, reporter tokens, and drift alert state.

A window's row and its tokens are deleted when it closes (:meth:`drop`), in the same
transaction that stores its released aggregate; nothing here names a device — a token is
``HMAC(window secret, device id)`` and the secret goes with the row. On PostgreSQL the
rows of a batch's windows are locked (``FOR UPDATE``) while it is added, so replicas add
to one window one batch at a time, and :meth:`due` skips windows another replica is
closing. SQLite has one writer at a time anyway.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select

from fleet.domain.aggregation import AggregateKey, OpenAggregate, OpenWindow
from fleet.store.repositories.base import SqlRepository, chunked
from fleet.store.tables import TelemetryAlertRow, TelemetryOpenWindowRow, TelemetryReporterRow
from schemas.device import Mechanism

__all__ = ["SqlOpenTelemetryRepository"]

_Row = TelemetryOpenWindowRow


class SqlOpenTelemetryRepository(SqlRepository):
    def lock(self, keys: Collection[AggregateKey]) -> dict[AggregateKey, OpenWindow]:
        """The open windows among ``keys``, locked until the transaction ends."""
        found: dict[AggregateKey, OpenWindow] = {}
        for chunk in chunked(keys, 100):
            matches = [
                and_(
                    col(_Row.release_digest) == k.release_digest,
                    col(_Row.model_version) == k.model_version,
                    col(_Row.window_start) == k.window_start,
                    col(_Row.cohort) == k.cohort,
                )
                for k in chunk
            ]
            query = (
                select(_Row)
                .where(or_(*matches))
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            for row in self._session.exec(query):
                window = _window(row)
                found[window.aggregate.key] = window
        return found

    def start(self, aggregate: OpenAggregate, *, seconds: int, closes_at: datetime) -> OpenWindow:
        """Open a window, or find the one a replica opened first (then locked)."""
        key = aggregate.key
        values = {
            "release_digest": key.release_digest,
            "model_version": key.model_version,
            "window_start": key.window_start,
            "window_seconds": seconds,
            "cohort": key.cohort,
            "closes_at": closes_at,
            "mechanism": aggregate.mechanism.model_dump(mode="json"),
            "sums": {name: list(sums) for name, sums in aggregate.sums.items()},
            "counters": dict(aggregate.counters),
            "reporters": aggregate.reporters,
            "secret": secrets.token_hex(32),
        }
        dialect = self._session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        self._session.exec(insert(_Row).values(**values).on_conflict_do_nothing())
        return self.lock([key])[key]

    def known_tokens(self, window_id: int, tokens: Collection[str]) -> set[str]:
        """Which of ``tokens`` already reported in this window."""
        known: set[str] = set()
        for chunk in chunked(tokens):
            query = select(TelemetryReporterRow.token).where(
                col(TelemetryReporterRow.window_id) == window_id,
                col(TelemetryReporterRow.token).in_(chunk),
            )
            known.update(self._session.exec(query))
        return known

    def save(self, window: OpenWindow, new_tokens: Collection[str]) -> None:
        """Store the window's sums and count, and the tokens of its new reporters."""
        aggregate = window.aggregate
        self._session.exec(
            update(_Row)
            .where(col(_Row.id) == window.id)
            .values(
                sums={name: list(sums) for name, sums in aggregate.sums.items()},
                counters=dict(aggregate.counters),
                reporters=aggregate.reporters,
            )
        )
        self._insert([TelemetryReporterRow(window_id=window.id, token=t) for t in new_tokens])

    def due(self, now: datetime, *, limit: int = 100) -> list[OpenWindow]:
        """Windows closing at or before ``now``, locked; those a replica holds are skipped."""
        query = (
            select(_Row)
            .where(col(_Row.closes_at) <= now)
            .order_by(col(_Row.closes_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        return [_window(row) for row in self._session.exec(query)]

    def drop(self, window_id: int) -> None:
        """Forget the window: its tokens and secret go, so who reported is unknowable."""
        self._session.exec(
            delete(TelemetryReporterRow).where(col(TelemetryReporterRow.window_id) == window_id)
        )
        self._session.exec(delete(_Row).where(col(_Row.id) == window_id))

    def alert(self, release_digest: str) -> tuple[bool, int]:
        """Whether the release's drift alert is open, and its quiet windows since."""
        row = self._session.get(TelemetryAlertRow, release_digest)
        return (False, 0) if row is None else (row.open, row.quiet)

    def set_alert(self, release_digest: str, *, open: bool, quiet: int, at: datetime) -> None:
        row = self._session.get(TelemetryAlertRow, release_digest)
        if row is None:
            row = TelemetryAlertRow(release_digest=release_digest, open=open, quiet=quiet,
                                    updated_at=at)  # fmt: skip
        else:
            row.open, row.quiet, row.updated_at = open, quiet, at
        self._session.add(row)


def _window(row: TelemetryOpenWindowRow) -> OpenWindow:
    key = AggregateKey(row.release_digest, row.model_version, row.window_start, row.cohort)
    aggregate = OpenAggregate(
        key,
        Mechanism.model_validate(row.mechanism),
        {name: tuple(int(c) for c in sums) for name, sums in row.sums.items()},
        {name: int(count) for name, count in row.counters.items()},
        row.reporters,
    )
    if row.id is None:
        raise ValueError("an open window row is read before it was inserted")
    return OpenWindow(row.id, aggregate, row.window_seconds, bytes.fromhex(row.secret),
                      row.closes_at)  # fmt: skip
