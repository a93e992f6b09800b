"""Released telemetry aggregates: noised cohort sums and a reporter count, never a device."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, delete, select

from fleet.domain.aggregation import AggregateKey, Release, ReleasedCounter, ReleasedHistogram
from fleet.store.repositories.base import SqlRepository
from fleet.store.tables import TelemetryAggregateRow
from schemas.device import Mechanism

__all__ = ["SqlTelemetryRepository"]


class SqlTelemetryRepository(SqlRepository):
    def add(self, released: Release, *, window_seconds: int, released_at: datetime) -> None:
        self._insert([_row(released, window_seconds, released_at)])

    def find(
        self,
        release_digest: str,
        *,
        model_version: str | None = None,
        limit: int = 1000,
    ) -> Sequence[Release]:
        """The newest ``limit`` releases of this release, oldest window first."""
        query = (
            select(TelemetryAggregateRow)
            .where(col(TelemetryAggregateRow.release_digest) == release_digest)
            .order_by(col(TelemetryAggregateRow.window_start).desc())
            .limit(limit)
        )
        if model_version is not None:
            query = query.where(col(TelemetryAggregateRow.model_version) == model_version)
        rows = list(self._session.exec(query))
        return [_release(row) for row in reversed(rows)]

    def purge(self, *, before: datetime) -> int:
        """Delete aggregates of windows that started before ``before``: the retention."""
        result = self._session.exec(
            delete(TelemetryAggregateRow).where(col(TelemetryAggregateRow.window_start) < before)
        )
        return int(result.rowcount)


def _row(released: Release, window_seconds: int, released_at: datetime) -> TelemetryAggregateRow:
    key = released.key
    return TelemetryAggregateRow(
        release_digest=key.release_digest,
        model_version=key.model_version,
        window_start=key.window_start,
        window_seconds=window_seconds,
        cohort=key.cohort,
        reporters=released.reporters,
        mechanism=released.mechanism.model_dump(mode="json"),
        central_epsilon=released.central_epsilon,
        histograms={
            name: {
                "counts": list(h.counts),
                "proportions": list(h.proportions),
                "variance": list(h.variance),
            }
            for name, h in released.histograms.items()
        },
        counters={
            name: {"count": c.count, "share": c.share, "variance": c.variance}
            for name, c in released.counters.items()
        },
        released_at=released_at,
    )


def _release(row: TelemetryAggregateRow) -> Release:
    key = AggregateKey(row.release_digest, row.model_version, row.window_start, row.cohort)
    histograms = {
        name: ReleasedHistogram(
            counts=tuple(int(c) for c in h["counts"]),
            proportions=tuple(float(p) for p in h["proportions"]),
            variance=tuple(float(v) for v in h["variance"]),
        )
        for name, h in row.histograms.items()
    }
    counters = {
        name: ReleasedCounter(int(c["count"]), float(c["share"]), float(c["variance"]))
        for name, c in (row.counters or {}).items()
    }
    return Release(
        key,
        Mechanism.model_validate(row.mechanism),
        row.central_epsilon,
        row.reporters,
        histograms,
        counters,
    )
