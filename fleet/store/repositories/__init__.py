"""Repositories: rows ⇄ ``fleet.domain.records``, one per aggregate, none committing."""

from fleet.store.repositories.catalog import (
    SqlArtifactRepository,
    SqlCalibrationRepository,
    SqlReleaseRepository,
)
from fleet.store.repositories.devices import SqlDeviceClassRepository, SqlDeviceRepository
from fleet.store.repositories.director import SqlDirectorOutbox
from fleet.store.repositories.events import SqlAuditLog, SqlStatusEventRepository
from fleet.store.repositories.protocols import (
    ArtifactRepository,
    AuditLog,
    CalibrationRepository,
    DeviceClassRepository,
    DeviceRepository,
    DirectorOutbox,
    ReleaseRepository,
    StatusEventRepository,
    TokenRepository,
)
from fleet.store.repositories.tokens import SqlTokenRepository

__all__ = [
    "ArtifactRepository",
    "AuditLog",
    "CalibrationRepository",
    "DeviceClassRepository",
    "DeviceRepository",
    "DirectorOutbox",
    "ReleaseRepository",
    "SqlArtifactRepository",
    "SqlAuditLog",
    "SqlCalibrationRepository",
    "SqlDeviceClassRepository",
    "SqlDeviceRepository",
    "SqlDirectorOutbox",
    "SqlReleaseRepository",
    "SqlStatusEventRepository",
    "SqlTokenRepository",
    "StatusEventRepository",
    "TokenRepository",
]
