"""The unit of work: one transaction, all repositories, rolled back unless committed.

Services depend on the ``UnitOfWork`` Protocol, so their tests can pass a fake with
in-memory repositories::

    with uow:
        sequence = uow.director.next_sequence(device_id)
        uow.director.add(record)
        uow.commit()
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from sqlmodel import Session

from fleet.store.errors import mapped_integrity_errors, unavailable_store
from fleet.store.repositories import (
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
    SqlArtifactRepository,
    SqlAuditLog,
    SqlBrokerAccountOutbox,
    SqlCalibrationRepository,
    SqlCoapKeyRepository,
    SqlDeviceClassRepository,
    SqlDeviceRepository,
    SqlDirectorOutbox,
    SqlModelCardRepository,
    SqlOpenTelemetryRepository,
    SqlReleaseRepository,
    SqlRolloutRepository,
    SqlStatusEventRepository,
    SqlTelemetryRepository,
    SqlTokenRepository,
    StatusEventRepository,
    TelemetryRepository,
    TokenRepository,
)

__all__ = ["SqlUnitOfWork", "UnitOfWork"]


class UnitOfWork(Protocol):
    # Read-only properties, so a fake may hold its own repository types.
    @property
    def device_classes(self) -> DeviceClassRepository: ...
    @property
    def devices(self) -> DeviceRepository: ...
    @property
    def artifacts(self) -> ArtifactRepository: ...
    @property
    def releases(self) -> ReleaseRepository: ...
    @property
    def model_cards(self) -> ModelCardRepository: ...
    @property
    def calibrations(self) -> CalibrationRepository: ...
    @property
    def director(self) -> DirectorOutbox: ...
    @property
    def broker_accounts(self) -> BrokerAccountOutbox: ...
    @property
    def coap_keys(self) -> CoapKeyRepository: ...
    @property
    def status_events(self) -> StatusEventRepository: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def tokens(self) -> TokenRepository: ...
    @property
    def rollouts(self) -> RolloutRepository: ...
    @property
    def telemetry(self) -> TelemetryRepository: ...
    @property
    def open_telemetry(self) -> OpenTelemetryRepository: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...
    def rollback(self) -> None: ...


class SqlUnitOfWork:
    """A session per ``with`` block; leaving the block without ``commit()`` rolls back."""

    device_classes: SqlDeviceClassRepository
    devices: SqlDeviceRepository
    artifacts: SqlArtifactRepository
    releases: SqlReleaseRepository
    model_cards: SqlModelCardRepository
    calibrations: SqlCalibrationRepository
    director: SqlDirectorOutbox
    broker_accounts: SqlBrokerAccountOutbox
    coap_keys: SqlCoapKeyRepository
    status_events: SqlStatusEventRepository
    audit: SqlAuditLog
    tokens: SqlTokenRepository
    rollouts: SqlRolloutRepository
    telemetry: SqlTelemetryRepository
    open_telemetry: SqlOpenTelemetryRepository

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory
        self._session: Session | None = None

    def __enter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("this unit of work is already in use; make another")
        session = self._session = self._session_factory()
        self.device_classes = SqlDeviceClassRepository(session)
        self.devices = SqlDeviceRepository(session)
        self.artifacts = SqlArtifactRepository(session)
        self.releases = SqlReleaseRepository(session)
        self.model_cards = SqlModelCardRepository(session)
        self.calibrations = SqlCalibrationRepository(session)
        self.director = SqlDirectorOutbox(session)
        self.broker_accounts = SqlBrokerAccountOutbox(session)
        self.coap_keys = SqlCoapKeyRepository(session)
        self.status_events = SqlStatusEventRepository(session)
        self.audit = SqlAuditLog(session)
        self.tokens = SqlTokenRepository(session)
        self.rollouts = SqlRolloutRepository(session)
        self.telemetry = SqlTelemetryRepository(session)
        self.open_telemetry = SqlOpenTelemetryRepository(session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session = self._active()
        try:
            # After a commit there is nothing left to roll back; otherwise this is what
            # makes "forgot to commit" and "raised halfway" leave no trace.
            session.rollback()
        finally:
            session.close()
            self._session = None
        unavailable = unavailable_store(exc)
        if unavailable is not None:
            raise unavailable from exc

    def commit(self) -> None:
        with mapped_integrity_errors():
            self._active().commit()

    def rollback(self) -> None:
        self._active().rollback()

    def _active(self) -> Session:
        if self._session is None:
            raise RuntimeError("use the unit of work inside a `with` block")
        return self._session
