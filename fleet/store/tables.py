"""SQLModel tables: the database's shape, and nothing else.

Rows never leave ``fleet.store``; repositories turn them into ``fleet.domain.records``.
Enumerations are stored as short strings rather than native enum types so adding a
state never needs a PostgreSQL ``ALTER TYPE``. Every timestamp is ``UtcDateTime``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    MetaData,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from fleet.domain.records import NO_COUNTER_YET
from fleet.store.sqltypes import BigId, UtcDateTime

__all__ = [
    "ApiTokenRow",
    "ArtifactRow",
    "AuditEventRow",
    "BrokerAccountRow",
    "CalibrationRow",
    "DeviceClassRow",
    "DeviceRow",
    "DeviceTagRow",
    "DirectorRow",
    "FleetTable",
    "ModelCardRow",
    "ReleaseRow",
    "RolloutEventRow",
    "RolloutMemberRow",
    "RolloutRow",
    "StatusEventRow",
    "TelemetryAggregateRow",
    "TelemetryAlertRow",
    "TelemetryOpenWindowRow",
    "TelemetryReporterRow",
    "metadata",
]

# Named constraints let Alembic's SQLite batch mode drop or alter them later.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)

DIGEST = 64  # a hex sha256
NAME = 64  # schemas.common.Name and DeviceId


class FleetTable(SQLModel, registry=registry(metadata=metadata)):
    """Base of our tables: its own metadata, so no other SQLModel leaks into migrations."""


class DeviceClassRow(FleetTable, table=True):
    __tablename__ = "device_class"

    name: str = Field(primary_key=True, max_length=NAME)
    ram_bytes: int = Field(sa_type=BigInteger)
    flash_bytes: int = Field(sa_type=BigInteger)
    supported_ops: list[str] = Field(default_factory=list, sa_type=JSON)
    cpu: str | None = Field(default=None, max_length=NAME)


class DeviceRow(FleetTable, table=True):
    __tablename__ = "device"

    id: str = Field(primary_key=True, max_length=NAME)
    device_class: str = Field(foreign_key="device_class.name", index=True, max_length=NAME)
    public_key_hex: str = Field(max_length=64)
    # One key per device: device messages are attributed by the key that signed them.
    keyid: str = Field(unique=True, max_length=DIGEST)
    enrolled_at: datetime = Field(sa_type=UtcDateTime)
    director_sequence: int = Field(default=0, sa_type=BigInteger)
    status_counter: int = Field(default=NO_COUNTER_YET, sa_type=BigInteger)
    state: str | None = Field(default=None, max_length=16)
    # Rollouts target devices by the release they run.
    running_release_digest: str | None = Field(default=None, index=True, max_length=DIGEST)
    components: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    last_seen: datetime | None = Field(default=None, sa_type=UtcDateTime)
    online: bool = False
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    decommissioned_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class DeviceTagRow(FleetTable, table=True):
    """Tags get their own table so targeting by tag is an indexed query on both backends."""

    __tablename__ = "device_tag"

    device_id: str = Field(
        primary_key=True, foreign_key="device.id", ondelete="CASCADE", max_length=NAME
    )
    tag: str = Field(primary_key=True, index=True, max_length=NAME)


class ArtifactRow(FleetTable, table=True):
    __tablename__ = "artifact"

    sha256: str = Field(primary_key=True, max_length=DIGEST)
    length: int = Field(sa_type=BigInteger)
    media_type: str = Field(max_length=128)
    created_at: datetime = Field(sa_type=UtcDateTime)


class ModelCardRow(FleetTable, table=True):
    """What inspection read from a ``.tflite`` artifact, and its drift reference once
    registered; both are ``fleet.domain.model_card`` models dumped as JSON."""

    __tablename__ = "model_card"

    sha256: str = Field(primary_key=True, foreign_key="artifact.sha256", max_length=DIGEST)
    card: dict[str, Any] = Field(sa_type=JSON)
    reference: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    created_at: datetime = Field(sa_type=UtcDateTime)


class ReleaseRow(FleetTable, table=True):
    __tablename__ = "release"
    __table_args__ = (Index(None, "device_class", "created_at"),)

    digest: str = Field(primary_key=True, max_length=DIGEST)
    name: str = Field(max_length=NAME)
    version: str = Field(max_length=64)
    device_class: str = Field(foreign_key="device_class.name", max_length=NAME)
    # The envelope exactly as signed; devices verify these bytes, so never re-serialise.
    envelope_json: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UtcDateTime)


class CalibrationRow(FleetTable, table=True):
    __tablename__ = "calibration"

    device_id: str = Field(primary_key=True, foreign_key="device.id", max_length=NAME)
    version: int = Field(primary_key=True, sa_type=BigInteger)
    sha256: str = Field(max_length=DIGEST)
    length: int = Field(sa_type=BigInteger)


class CoapKeysRow(FleetTable, table=True):
    """A device's OSCORE keys (schemas.oscore) and the server's sequence-number lease.

    The master secret is symmetric, so the server must hold it: a database backup holds
    every device's CoAP keys (docs/operations.md). ``next_sequence`` is the first number
    no replica has leased yet; each lease moves it on, so replicas never share one.
    """

    __tablename__ = "coap_keys"

    device_id: str = Field(primary_key=True, foreign_key="device.id", max_length=NAME)
    device_kid: str = Field(unique=True, max_length=14)
    master_secret: str = Field(max_length=128)
    master_salt: str = Field(max_length=128)
    server_id: str = Field(max_length=14)
    next_sequence: int = Field(default=0, sa_type=BigInteger)
    issued_at: datetime = Field(sa_type=UtcDateTime)


class BrokerAccountRow(FleetTable, table=True):
    """Changes to devices' broker logins, an outbox: written in the transaction that
    enrolls or revokes the device, applied to the broker afterwards, kept as a record.

    A new login's password is held only until the broker has it (then set to NULL): the
    broker keeps its own salted hash, and the device got the password once, at enrollment.
    """

    __tablename__ = "broker_account_outbox"
    __table_args__ = (
        Index(
            "ix_broker_account_outbox_pending",
            "id",
            postgresql_where=text("applied_at IS NULL"),
            sqlite_where=text("applied_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    device_id: str = Field(index=True, max_length=NAME)
    action: str = Field(max_length=16)
    password: str | None = Field(default=None, max_length=128)
    queued_at: datetime = Field(sa_type=UtcDateTime)
    applied_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class DirectorRow(FleetTable, table=True):
    """Director decisions, doubling as the transactional outbox for MQTT."""

    __tablename__ = "director_outbox"
    __table_args__ = (
        UniqueConstraint("device_id", "sequence"),
        # The publisher polls for unpublished rows; they are few, the table is not.
        Index(
            "ix_director_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    # Insertion order: per device it follows sequence order, because allocating a
    # sequence locks the device row until the transaction ends.
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    device_id: str = Field(foreign_key="device.id", max_length=NAME)
    sequence: int = Field(sa_type=BigInteger)
    release_digest: str = Field(foreign_key="release.digest", max_length=DIGEST)
    action: str = Field(max_length=16)
    rollout_id: str | None = Field(default=None, max_length=64)
    wave: int | None = Field(default=None, sa_type=BigInteger)
    issued_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    envelope_json: str = Field(sa_type=Text)
    published_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class StatusEventRow(FleetTable, table=True):
    __tablename__ = "status_event"
    __table_args__ = (Index(None, "device_id", "received_at"),)

    device_id: str = Field(primary_key=True, foreign_key="device.id", max_length=NAME)
    # A device's counter is unique per device: the key itself refuses a replay.
    counter: int = Field(primary_key=True, sa_type=BigInteger)
    state: str = Field(max_length=16)
    release_digest: str | None = Field(default=None, max_length=DIGEST)
    error_code: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, max_length=256)
    received_at: datetime = Field(sa_type=UtcDateTime)


class AuditEventRow(FleetTable, table=True):
    __tablename__ = "audit_event"
    __table_args__ = (Index(None, "subject", "at"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    at: datetime = Field(sa_type=UtcDateTime, index=True)
    actor: str = Field(max_length=128)
    action: str = Field(max_length=64)
    subject: str = Field(max_length=256)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class ApiTokenRow(FleetTable, table=True):
    __tablename__ = "api_token"

    token_sha256: str = Field(primary_key=True, max_length=DIGEST)
    name: str = Field(max_length=128)
    role: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


# -- staged rollouts (docs/architecture.md §5; fleet/domain/rollout.py) ----------------------


class RolloutRow(FleetTable, table=True):
    __tablename__ = "rollout"

    id: str = Field(primary_key=True, max_length=64)
    release_digest: str = Field(foreign_key="release.digest", max_length=DIGEST)
    status: str = Field(index=True, max_length=16)
    plan: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    target: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    population: int = Field(sa_type=BigInteger)
    wave: int = Field(sa_type=BigInteger)
    wave_started_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class RolloutMemberRow(FleetTable, table=True):
    """A device of a rollout and the release it ran before (what rollback restores)."""

    __tablename__ = "rollout_member"
    __table_args__ = (Index(None, "rollout_id", "rank"),)

    rollout_id: str = Field(primary_key=True, foreign_key="rollout.id", max_length=64)
    device_id: str = Field(primary_key=True, foreign_key="device.id", index=True, max_length=NAME)
    rank: int = Field(sa_type=BigInteger)
    previous_release: str | None = Field(default=None, max_length=DIGEST)
    wave: int | None = Field(default=None, sa_type=BigInteger)
    directed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    rollback: str | None = Field(default=None, max_length=256)


class RolloutClaimRow(FleetTable, table=True):
    """A device held by a rollout that is not over: the primary key makes it one at a time.

    The row is written with the rollout's members and deleted when the rollout ends or the
    device is taken out of it, so concurrent rollout creations cannot both take a device,
    whatever they read first.
    """

    __tablename__ = "rollout_claim"

    device_id: str = Field(primary_key=True, foreign_key="device.id", max_length=NAME)
    rollout_id: str = Field(foreign_key="rollout.id", index=True, max_length=64)


class RolloutEventRow(FleetTable, table=True):
    """Append-only: every transition of every rollout."""

    __tablename__ = "rollout_event"
    __table_args__ = (Index(None, "rollout_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    rollout_id: str = Field(foreign_key="rollout.id", max_length=64)
    at: datetime = Field(sa_type=UtcDateTime)
    kind: str = Field(max_length=32)
    status: str = Field(max_length=16)
    wave: int | None = Field(default=None, sa_type=BigInteger)
    actor: str = Field(max_length=128)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class TelemetryAggregateRow(FleetTable, table=True):
    """A released cohort aggregate: noised sums and a reporter count, never a device."""

    __tablename__ = "telemetry_aggregate"
    __table_args__ = (
        UniqueConstraint(
            "release_digest",
            "model_version",
            "window_start",
            "cohort",
            name="uq_telemetry_aggregate_key",
        ),
        Index(None, "release_digest", "window_start"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    release_digest: str = Field(max_length=DIGEST)
    model_version: str = Field(max_length=NAME)
    window_start: datetime = Field(sa_type=UtcDateTime, index=True)
    window_seconds: int = Field(sa_type=BigInteger)
    cohort: str = Field(max_length=NAME)
    reporters: int = Field(sa_type=BigInteger)
    mechanism: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    central_epsilon: float
    # {histogram: {"counts": [...], "proportions": [...], "variance": [...]}}
    histograms: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # {counter: {"count": int, "share": float, "variance": float}}
    counters: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}")
    )
    released_at: datetime = Field(sa_type=UtcDateTime)


class TelemetryOpenWindowRow(FleetTable, table=True):
    """A window still taking reports: running noised sums, deleted when it closes.

    ``secret`` keys the reporter tokens (HMAC of a device id): it lives exactly as long
    as the window, so once the row is gone nobody can tell which devices reported.
    """

    __tablename__ = "telemetry_open_window"
    __table_args__ = (
        UniqueConstraint(
            "release_digest",
            "model_version",
            "window_start",
            "cohort",
            name="uq_telemetry_open_window_key",
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    release_digest: str = Field(max_length=DIGEST)
    model_version: str = Field(max_length=NAME)
    window_start: datetime = Field(sa_type=UtcDateTime)
    window_seconds: int = Field(sa_type=BigInteger)
    cohort: str = Field(max_length=NAME)
    closes_at: datetime = Field(sa_type=UtcDateTime, index=True)
    mechanism: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    sums: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # {name: [int, ...]}
    counters: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # {name: int}
    reporters: int = Field(sa_type=BigInteger)
    secret: str = Field(max_length=DIGEST)  # hex of 32 random bytes


class TelemetryReporterRow(FleetTable, table=True):
    """An opaque token per device that reported in an open window: refuses a second."""

    __tablename__ = "telemetry_reporter"

    window_id: int = Field(
        sa_column=Column(
            BigId,
            ForeignKey("telemetry_open_window.id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    token: str = Field(primary_key=True, max_length=DIGEST)


class TelemetryAlertRow(FleetTable, table=True):
    """Whether a release's drift alert is open, so a restart neither repeats nor loses it."""

    __tablename__ = "telemetry_alert"

    release_digest: str = Field(primary_key=True, max_length=DIGEST)
    open: bool
    quiet: int = Field(sa_type=BigInteger)
    updated_at: datetime = Field(sa_type=UtcDateTime)
