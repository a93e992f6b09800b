"""What services may ask of the store, as Protocols a test fake can satisfy.

Every method works inside the caller's unit of work: nothing here commits. Reads
return ``fleet.domain.records`` values or ``None``; a change to a row that does not
exist raises ``NotFound``; a write the database refuses raises a ``Conflict``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from fleet.domain import aggregation
from fleet.domain.model_card import ModelReference, StoredModel
from fleet.domain.records import (
    ApiToken,
    Artifact,
    AuditEvent,
    BrokerAccountChange,
    Calibration,
    Device,
    DeviceClass,
    DeviceSigner,
    DirectorRecord,
    InstalledComponent,
    Release,
    StatusEvent,
)
from fleet.domain.rollout import Member, Rollout, RolloutEvent, RolloutStatus
from schemas import DeviceState
from schemas.oscore import OscoreKeys

__all__ = [
    "ArtifactRepository",
    "AuditLog",
    "BrokerAccountOutbox",
    "CalibrationRepository",
    "DeviceClassRepository",
    "DeviceRepository",
    "DirectorOutbox",
    "ModelCardRepository",
    "OpenTelemetryRepository",
    "ReleaseRepository",
    "RolloutRepository",
    "StatusEventRepository",
    "TokenRepository",
]


class DeviceClassRepository(Protocol):
    def add(self, device_class: DeviceClass) -> None: ...
    def get(self, name: str) -> DeviceClass | None: ...
    def all(self) -> Sequence[DeviceClass]: ...


class DeviceRepository(Protocol):
    def add(self, device: Device) -> None: ...
    def add_many(self, devices: Iterable[Device]) -> None: ...
    def get(self, device_id: str) -> Device | None: ...
    def lock(self, device_ids: Iterable[str]) -> None:
        """Hold these devices' rows until the unit of work ends, taken in id order.

        A writer that touches a device's history as well as its row takes the row
        first, so two replicas working on one device wait on each other, never in a
        cycle. A no-op where the database serialises writers anyway (SQLite).
        """
        ...

    def signers(self, device_ids: Iterable[str]) -> dict[str, DeviceSigner]: ...
    def accept_counters(self, counters: Mapping[str, tuple[int, datetime]]) -> set[str]: ...

    def find(
        self,
        *,
        device_class: str | None = None,
        tags: Collection[str] = (),
        running_release_digest: str | None = None,
        after_id: str | None = None,
        limit: int | None = None,
    ) -> Sequence[Device]:
        """Devices matching every filter given (all ``tags``), ordered by id."""
        ...

    def set_tags(self, device_id: str, tags: Collection[str]) -> None: ...

    def accept_counter(self, device_id: str, counter: int, *, seen_at: datetime) -> bool:
        """Record a device message's counter if it is above the last accepted one.

        Returns False for a replayed or overtaken message. The check and the write are
        one statement, so two replicas handling the same device cannot both accept.
        """
        ...

    def update_reported(
        self,
        device_id: str,
        *,
        counter: int,
        seen_at: datetime,
        state: DeviceState,
        running_release_digest: str | None,
        components: Sequence[InstalledComponent],
    ) -> bool:
        """``accept_counter`` plus the reported state, all or nothing."""
        ...

    def set_online(self, device_id: str, online: bool, *, at: datetime) -> None: ...
    def revoke(self, device_id: str, *, at: datetime) -> bool:
        """Mark it revoked; False if it already was."""
        ...

    def decommission(self, device_id: str, *, at: datetime) -> bool:
        """Tombstone it: keys gone, tags gone, revoked; False if it already was."""
        ...


class BrokerAccountOutbox(Protocol):
    def queue(self, changes: Sequence[tuple[str, str, str | None]], *, at: datetime) -> None:
        """(device id, action, password or None) each, to apply in this order."""
        ...

    def count_pending(self) -> int: ...
    def pending(self, *, limit: int = 500) -> Sequence[BrokerAccountChange]: ...
    def mark_applied(self, ids: Collection[int], *, at: datetime) -> None: ...


class CoapKeyRepository(Protocol):
    def replace(self, device_id: str, keys: OscoreKeys, *, at: datetime) -> None: ...
    def by_kid(self, device_kid: str) -> tuple[str, OscoreKeys] | None:
        """The device id and keys a request's kid names."""
        ...

    def reserve(self, device_id: str, count: int) -> range:
        """Lease the next ``count`` server sequence numbers; disjoint across callers."""
        ...

    def delete(self, device_id: str) -> None: ...


class ArtifactRepository(Protocol):
    def add(self, artifact: Artifact) -> None: ...
    def get(self, sha256: str) -> Artifact | None: ...
    def all(self) -> Sequence[Artifact]: ...


class ModelCardRepository(Protocol):
    def add(self, model: StoredModel) -> None: ...
    def get(self, sha256: str) -> StoredModel | None: ...
    def set_reference(self, sha256: str, reference: ModelReference) -> None: ...


class ReleaseRepository(Protocol):
    def add(self, release: Release) -> None: ...
    def get(self, digest: str) -> Release | None: ...

    def find(self, *, device_class: str | None = None) -> Sequence[Release]:
        """Newest first."""
        ...


class CalibrationRepository(Protocol):
    def add(self, calibration: Calibration) -> None: ...
    def get(self, device_id: str, version: int) -> Calibration | None: ...
    def latest(self, device_id: str) -> Calibration | None: ...
    def delete_device(self, device_id: str) -> set[str]:
        """Remove every calibration version of the device; the sha256s they named."""
        ...

    def referenced(self, sha256s: Collection[str]) -> set[str]: ...


class DirectorOutbox(Protocol):
    def next_sequence(self, device_id: str) -> int:
        """Allocate the device's next director sequence, locking it until commit.

        A concurrent transaction allocating for the same device waits, then gets the
        following number, so sequences are strictly increasing across replicas.
        """
        ...

    def add(self, record: DirectorRecord) -> None: ...

    def latest(self, device_id: str) -> DirectorRecord | None:
        """The decision a device should act on now: its highest sequence."""
        ...

    def unpublished(self, *, limit: int = 100) -> Sequence[DirectorRecord]:
        """Oldest first; on PostgreSQL the rows stay locked (skipping rows another
        publisher holds) until the transaction ends, so replicas do not double-send."""
        ...

    def count_unpublished(self) -> int: ...

    def mark_published(self, device_id: str, sequence: int, *, at: datetime) -> None: ...


class StatusEventRepository(Protocol):
    def append(self, event: StatusEvent) -> None: ...

    def history(
        self, device_id: str, *, since: datetime | None = None, limit: int = 100
    ) -> Sequence[StatusEvent]:
        """Newest first."""
        ...


class AuditLog(Protocol):
    """Append-only: there is deliberately no way to change or remove an entry."""

    def append(
        self, *, at: datetime, actor: str, action: str, subject: str, detail: dict[str, Any]
    ) -> AuditEvent: ...

    def read(
        self, *, subject: str | None = None, after_id: int | None = None, limit: int = 100
    ) -> Sequence[AuditEvent]:
        """Oldest first, from just after ``after_id``: a cursor for tailing the log."""
        ...


class TokenRepository(Protocol):
    def add(self, token: ApiToken) -> None: ...
    def get(self, token_sha256: str) -> ApiToken | None: ...
    def all(self) -> Sequence[ApiToken]: ...
    def revoke(self, token_sha256: str, *, at: datetime) -> None: ...


class RolloutRepository(Protocol):
    """Rollouts, their members and their append-only events (``fleet.domain.rollout``)."""

    def add(self, rollout: Rollout, members: Iterable[Member]) -> None: ...
    def get(self, rollout_id: str, *, for_update: bool = False) -> Rollout | None: ...
    def find(self, *, statuses: Collection[RolloutStatus] = ()) -> Sequence[Rollout]: ...
    def save(self, rollout: Rollout, *, at: datetime) -> None: ...

    def busy_devices(self, device_ids: Collection[str]) -> set[str]:
        """Which of these devices are members of a rollout that is not over."""
        ...

    def claims(self, device_ids: Collection[str]) -> dict[str, str]:
        """Device → the active rollout holding it."""
        ...

    def detach(self, device_id: str) -> str | None:
        """Take the device out of its active rollout; that rollout's id, or None."""
        ...

    def members(self, rollout_id: str, *, below_rank: int | None = None) -> Sequence[Member]: ...
    def mark_directed(
        self, rollout_id: str, device_ids: Sequence[str], *, wave: int, at: datetime
    ) -> None: ...
    def mark_rollback(self, rollout_id: str, device_id: str, outcome: str) -> None: ...
    def rollback_outcomes(self, rollout_id: str) -> dict[str, int]: ...

    def reports(self, rollout: Rollout) -> list[tuple[str, int, str | None, bool]]:
        """Per directed member: (device, wave, worst outcome or None, online)."""
        ...

    def append_events(self, rollout_id: str, events: Sequence[RolloutEvent]) -> None: ...
    def events(self, rollout_id: str) -> Sequence[RolloutEvent]: ...


class TelemetryRepository(Protocol):
    def add(
        self, released: aggregation.Release, *, window_seconds: int, released_at: datetime
    ) -> None: ...

    def find(
        self, release_digest: str, *, model_version: str | None = None, limit: int = 1000
    ) -> Sequence[aggregation.Release]: ...

    def purge(self, *, before: datetime) -> int: ...


class OpenTelemetryRepository(Protocol):
    def lock(
        self, keys: Collection[aggregation.AggregateKey]
    ) -> dict[aggregation.AggregateKey, aggregation.OpenWindow]: ...

    def start(
        self, aggregate: aggregation.OpenAggregate, *, seconds: int, closes_at: datetime
    ) -> aggregation.OpenWindow: ...

    def known_tokens(self, window_id: int, tokens: Collection[str]) -> set[str]: ...
    def save(self, window: aggregation.OpenWindow, new_tokens: Collection[str]) -> None: ...
    def due(self, now: datetime, *, limit: int = 100) -> list[aggregation.OpenWindow]: ...
    def drop(self, window_id: int) -> None: ...
    def alert(self, release_digest: str) -> tuple[bool, int]: ...

    def set_alert(self, release_digest: str, *, open: bool, quiet: int, at: datetime) -> None: ...
