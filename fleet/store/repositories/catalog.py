"""What can be delivered: artifacts, releases and per-device calibrations."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import delete
from sqlmodel import col, select

from fleet.domain.records import Artifact, Calibration, Release
from fleet.store.repositories.base import SqlRepository
from fleet.store.tables import ArtifactRow, CalibrationRow, ReleaseRow

__all__ = ["SqlArtifactRepository", "SqlCalibrationRepository", "SqlReleaseRepository"]


class SqlArtifactRepository(SqlRepository):
    def add(self, artifact: Artifact) -> None:
        self._insert([ArtifactRow(**vars(artifact))])

    def get(self, sha256: str) -> Artifact | None:
        row = self._session.get(ArtifactRow, sha256)
        return None if row is None else _artifact(row)

    def all(self) -> Sequence[Artifact]:
        rows = self._session.exec(select(ArtifactRow).order_by(col(ArtifactRow.created_at)))
        return [_artifact(row) for row in rows]


class SqlReleaseRepository(SqlRepository):
    def add(self, release: Release) -> None:
        self._insert([ReleaseRow(**vars(release))])

    def get(self, digest: str) -> Release | None:
        row = self._session.get(ReleaseRow, digest)
        return None if row is None else _release(row)

    def find(self, *, device_class: str | None = None) -> Sequence[Release]:
        query = select(ReleaseRow).order_by(
            col(ReleaseRow.created_at).desc(), col(ReleaseRow.digest)
        )
        if device_class is not None:
            query = query.where(col(ReleaseRow.device_class) == device_class)
        return [_release(row) for row in self._session.exec(query)]


class SqlCalibrationRepository(SqlRepository):
    def add(self, calibration: Calibration) -> None:
        self._insert([CalibrationRow(**vars(calibration))])

    def get(self, device_id: str, version: int) -> Calibration | None:
        row = self._session.get(CalibrationRow, (device_id, version))
        return None if row is None else _calibration(row)

    def latest(self, device_id: str) -> Calibration | None:
        row = self._session.exec(
            select(CalibrationRow)
            .where(col(CalibrationRow.device_id) == device_id)
            .order_by(col(CalibrationRow.version).desc())
            .limit(1)
        ).first()
        return None if row is None else _calibration(row)

    def delete_device(self, device_id: str) -> set[str]:
        """Remove every calibration version of the device; the sha256s they named."""
        sha256s = set(
            self._session.exec(
                select(CalibrationRow.sha256).where(col(CalibrationRow.device_id) == device_id)
            )
        )
        self._session.exec(delete(CalibrationRow).where(col(CalibrationRow.device_id) == device_id))
        return sha256s

    def referenced(self, sha256s: Collection[str]) -> set[str]:
        """Which of these blobs a calibration still names."""
        if not sha256s:
            return set()
        rows = self._session.exec(
            select(CalibrationRow.sha256).where(col(CalibrationRow.sha256).in_(list(sha256s)))
        )
        return set(rows)


def _artifact(row: ArtifactRow) -> Artifact:
    return Artifact(
        sha256=row.sha256, length=row.length, media_type=row.media_type, created_at=row.created_at
    )


def _release(row: ReleaseRow) -> Release:
    return Release(
        digest=row.digest,
        name=row.name,
        version=row.version,
        device_class=row.device_class,
        envelope_json=row.envelope_json,
        created_at=row.created_at,
    )


def _calibration(row: CalibrationRow) -> Calibration:
    return Calibration(
        device_id=row.device_id, version=row.version, sha256=row.sha256, length=row.length
    )
