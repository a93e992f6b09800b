"""Repositories: rows ⇄ ``fleet.domain.records``, one per aggregate, none committing."""

from fleet.store.repositories.broker_accounts import SqlBrokerAccountOutbox
from fleet.store.repositories.catalog import (
    SqlArtifactRepository,
    SqlCalibrationRepository,
    SqlReleaseRepository,
)
from fleet.store.repositories.coap_keys import SqlCoapKeyRepository
from fleet.store.repositories.devices import SqlDeviceClassRepository, SqlDeviceRepository
from fleet.store.repositories.director import SqlDirectorOutbox
from fleet.store.repositories.events import SqlAuditLog, SqlStatusEventRepository
from fleet.store.repositories.models import SqlModelCardRepository
from fleet.store.repositories.open_telemetry import SqlOpenTelemetryRepository
from fleet.store.repositories.protocols import (
    ArtifactRepository,
    AuditLog,
    BrokerAccountOutbox,
    CalibrationRepository,
    CoapKeyRepository,
    DeviceClassRepository,
    DeviceRepository,
    DirectorOutbox,
    ModelCardRepository,
    OpenTelemetryRepository,
    ReleaseRepository,
    RolloutRepository,
    StatusEventRepository,
    TelemetryRepository,
    TokenRepository,
)
from fleet.store.repositories.rollouts import SqlRolloutRepository
from fleet.store.repositories.telemetry import SqlTelemetryRepository
from fleet.store.repositories.tokens import SqlTokenRepository

__all__ = [
    "ArtifactRepository",
    "AuditLog",
    "BrokerAccountOutbox",
    "CalibrationRepository",
    "CoapKeyRepository",
    "DeviceClassRepository",
    "DeviceRepository",
    "DirectorOutbox",
    "ModelCardRepository",
    "OpenTelemetryRepository",
    "ReleaseRepository",
    "RolloutRepository",
    "SqlArtifactRepository",
    "SqlAuditLog",
    "SqlBrokerAccountOutbox",
    "SqlCalibrationRepository",
    "SqlCoapKeyRepository",
    "SqlDeviceClassRepository",
    "SqlDeviceRepository",
    "SqlDirectorOutbox",
    "SqlModelCardRepository",
    "SqlOpenTelemetryRepository",
    "SqlReleaseRepository",
    "SqlRolloutRepository",
    "SqlStatusEventRepository",
    "SqlTelemetryRepository",
    "SqlTokenRepository",
    "StatusEventRepository",
    "TelemetryRepository",
    "TokenRepository",
]
