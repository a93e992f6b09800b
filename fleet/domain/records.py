"""What the fleet server remembers, as plain immutable values.

These records are what repositories return and accept; they know nothing of the
database, so services and the pure domain can be tested with in-memory fakes. A change
is a new value (``dataclasses.replace``), never a mutation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from schemas import Action, DeviceState, Envelope, ReleaseManifest, decode_payload

__all__ = [
    "NO_COUNTER_YET",
    "ApiToken",
    "Artifact",
    "AuditEvent",
    "Calibration",
    "Device",
    "DeviceClass",
    "DirectorRecord",
    "InstalledComponent",
    "Release",
    "Role",
    "StatusEvent",
]

# Device counters start at 0, so "nothing accepted yet" must sort below every counter.
NO_COUNTER_YET = -1


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


@dataclass(frozen=True)
class DeviceClass:
    name: str
    ram_bytes: int
    flash_bytes: int
    supported_ops: frozenset[str] = frozenset()
    cpu: str | None = None


@dataclass(frozen=True)
class InstalledComponent:
    """A component version a device reports running."""

    kind: str
    version: str
    security_version: int


@dataclass(frozen=True)
class Device:
    id: str
    device_class: str
    public_key_hex: str
    keyid: str
    enrolled_at: datetime
    tags: frozenset[str] = frozenset()
    director_sequence: int = 0  # the last sequence issued to this device
    status_counter: int = NO_COUNTER_YET  # the last device counter accepted
    state: DeviceState | None = None
    running_release_digest: str | None = None
    components: tuple[InstalledComponent, ...] = ()
    last_seen: datetime | None = None
    online: bool = False
    revoked_at: datetime | None = None
    """When an operator revoked it: its broker login and its signed messages are refused."""
    decommissioned_at: datetime | None = None
    """When it was retired: keys, tags and calibration deleted, broker login removed."""


@dataclass(frozen=True, slots=True)
class BrokerAccountChange:
    """A change to a device's broker login, queued with the database change that needs it
    and applied to the broker by ``fleet.services.broker_accounts``."""

    id: int
    device_id: str
    action: str  # "create" | "disable" | "delete"
    password: str | None  # only for "create", and only until it is applied


@dataclass(frozen=True, slots=True)
class DeviceSigner:
    """What checking a signed device message needs of a device, and its cohort."""

    id: str
    device_class: str
    public_key_hex: str
    status_counter: int
    revoked: bool = False


@dataclass(frozen=True)
class Artifact:
    sha256: str
    length: int
    media_type: str
    created_at: datetime


@dataclass(frozen=True)
class Release:
    """An offline-signed release manifest, kept as the exact envelope received.

    ``digest`` is sha256 of the envelope's payload bytes: what director manifests name.
    """

    digest: str
    name: str
    version: str
    device_class: str
    envelope_json: str
    created_at: datetime

    def manifest(self) -> ReleaseManifest:
        """The signed manifest; it was verified when the release was registered."""
        envelope = Envelope.from_bytes(self.envelope_json.encode(), kind="release")
        return decode_payload(envelope, ReleaseManifest)


@dataclass(frozen=True)
class Calibration:
    device_id: str
    version: int
    sha256: str
    length: int


@dataclass(frozen=True)
class DirectorRecord:
    """One signed director decision, and the outbox entry that publishes it.

    Written in the same transaction as the decision and published to MQTT afterwards,
    so a crash between the two delays a decision but never loses it.
    """

    device_id: str
    sequence: int
    release_digest: str
    action: Action
    issued_at: datetime
    expires_at: datetime
    envelope_json: str
    rollout_id: str | None = None
    wave: int | None = None
    published_at: datetime | None = None


@dataclass(frozen=True)
class StatusEvent:
    device_id: str
    counter: int
    state: DeviceState
    received_at: datetime
    release_digest: str | None = None
    error_code: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class AuditEvent:
    """An entry of the append-only audit log; ``id`` is assigned when appended."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiToken:
    """An API token is stored only as the sha256 of its secret."""

    token_sha256: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None
