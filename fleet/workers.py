"""Background workers of one server process: the outbox pump and the device inbox.

Each is a thread with a stop event; the composition root starts and stops them.
"""

from __future__ import annotations

import functools
import itertools
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime

import structlog

from fleet.observability import Metrics
from fleet.services.broker_accounts import (
    BrokerAccounts,
    pending_broker_account_changes,
    sync_broker_accounts,
)
from fleet.services.delivery import DesiredStatePublisher, pending_manifests, publish_pending
from fleet.services.presence import record_presence
from fleet.services.status import IncomingMessage, ingest_status_batch
from fleet.services.telemetry import TelemetryIngest
from fleet.store import StoreError, StoreUnavailable, UnitOfWork
from fleet.transports.errors import TransportError
from fleet.transports.mqtt_fleet import DeviceMessage
from schemas import Envelope

__all__ = ["BrokerAccountSync", "DeviceInbox", "OutboxPump"]

_log = structlog.get_logger(__name__)
UowFactory = Callable[[], UnitOfWork]


class _Worker:
    name = "worker"

    def __init__(self, metrics: Metrics) -> None:
        self._failures = metrics.worker_failures.labels(worker=self.name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._step()
                backoff = 0.1
            except (TransportError, StoreError) as exc:
                _log.warning(f"{self.name}_retrying", error=str(exc), backoff=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                self._failures.inc()
                _log.exception(f"{self.name}_failed")
                self._stop.wait(1.0)

    def _step(self) -> None:
        raise NotImplementedError


class _OutboxWorker(_Worker):
    """Drains a database outbox: polls every ``idle_poll`` seconds while it is empty, and
    at once after ``wake()`` (called by whoever just queued something)."""

    def __init__(self, metrics: Metrics, *, idle_poll: float) -> None:
        super().__init__(metrics)
        self._idle_poll = idle_poll
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._wake.set()
        super().stop(timeout)

    def _idle(self) -> None:
        self._wake.wait(self._idle_poll)
        self._wake.clear()


class OutboxPump(_OutboxWorker):
    """Publishes queued director manifests; ``wake()`` after queueing new ones."""

    name = "outbox_pump"

    def __init__(
        self,
        new_uow: UowFactory,
        publisher: DesiredStatePublisher,
        *,
        roots: Callable[[], Sequence[Envelope]],
        clock: Callable[[], datetime],
        metrics: Metrics,
        idle_poll: float = 1.0,
    ) -> None:
        super().__init__(metrics, idle_poll=idle_poll)
        self._new_uow = new_uow
        self._publisher = publisher
        self._roots = roots
        self._clock = clock
        self._metrics = metrics

    def drain(self, timeout: float) -> int:
        """Stop, then publish what is still queued until none is or ``timeout`` passes;
        how many were published. Run after the inbox drained: its last batches may have
        queued manifests (a rollout's next wave, a rollback)."""
        deadline = time.monotonic() + timeout
        self.stop(timeout)
        published = 0
        while (remaining := deadline - time.monotonic()) > 0:
            batch = publish_pending(
                self._new_uow(),
                self._publisher,
                roots=self._roots(),
                now=self._clock,
                timeout=remaining,
            )
            self._metrics.manifests_published.inc(batch)
            published += batch
            if batch == 0:
                break
        return published

    def _step(self) -> None:
        # Counted before publishing, which raises while the broker is away: a gauge
        # that does not fall is how a stuck pump shows.
        self._metrics.outbox_pending.set(pending_manifests(self._new_uow()))
        published = publish_pending(
            self._new_uow(), self._publisher, roots=self._roots(), now=self._clock
        )
        self._metrics.manifests_published.inc(published)
        if published == 0:
            self._idle()


class DeviceInbox(_Worker):
    """Drains device messages in batches: one transaction per batch and kind.

    A batch is taken off the queue once and ingested in stages (presence, then each run
    of status or telemetry); a stage the database could not do now (``StoreUnavailable``:
    a deadlock with another replica, a lost connection) committed nothing and is kept and
    tried again after the worker's backoff, so a busy database delays device reports but
    never loses them. A stage that fails for any other reason is a bug retrying cannot
    fix: it is dropped, counted in ``fleet_worker_failures_total`` and logged.
    """

    name = "device_inbox"

    def __init__(
        self,
        new_uow: UowFactory,
        inbox: queue.Queue[DeviceMessage],
        *,
        metrics: Metrics,
        telemetry: TelemetryIngest | None = None,
        batch_size: int = 500,
        close_every: float = 0.5,
    ) -> None:
        super().__init__(metrics)
        self._new_uow = new_uow
        self._inbox = inbox
        self._metrics = metrics
        self._telemetry = telemetry
        self._batch_size = batch_size
        # Closing is a query on the open windows: not once per batch under load.
        self._close_every = close_every
        self._closed_at = -math.inf
        self._stages: deque[Callable[[], None]] = deque()

    def _take_batch(self) -> list[DeviceMessage]:
        try:
            batch = [self._inbox.get(timeout=0.2)]
        except queue.Empty:
            return []
        while len(batch) < self._batch_size:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def drain(self, timeout: float) -> bool:
        """Finish what was received (the queue and a kept batch), then stop; False if
        ``timeout`` passed first (what is left is lost with the process)."""
        deadline = time.monotonic() + timeout
        while (not self._inbox.empty() or self._stages) and time.monotonic() < deadline:
            time.sleep(0.02)
        # The step in progress finishes before the thread sees the stop.
        self.stop(max(0.0, deadline - time.monotonic()))
        left = self._inbox.qsize() + len(self._stages)
        if left:
            _log.warning("device_inbox_drain_incomplete", left=left)
        return left == 0

    def _step(self) -> None:
        if not self._stages:
            self._stages.extend(self._stages_of(self._take_batch()))
        if self._telemetry is not None and time.monotonic() - self._closed_at >= self._close_every:
            self._telemetry.close_due()
            self._closed_at = time.monotonic()
        while self._stages:
            try:
                self._stages[0]()
            except StoreUnavailable:
                raise  # kept: ``_run`` backs off and the next step tries it again
            except Exception:
                self._stages.popleft()
                raise
            self._stages.popleft()

    def _stages_of(self, batch: Sequence[DeviceMessage]) -> list[Callable[[], None]]:
        for message in batch:
            if message.transport == "mqtt":
                self._metrics.mqtt_messages.labels(kind=message.kind).inc()
        stages: list[Callable[[], None]] = []
        presence = [(m.device_id, m.payload, m.received_at) for m in batch if m.kind == "online"]
        if presence:
            stages.append(functools.partial(self._record_presence, presence))
        # Status and telemetry share a device's counter: runs keep their arrival order.
        signed = [m for m in batch if m.kind in ("status", "telemetry")]
        for kind, run in itertools.groupby(signed, key=lambda m: m.kind):
            messages = list(run)
            ingest = self._ingest if kind == "status" else self._ingest_telemetry
            stages.append(functools.partial(ingest, messages))
        return stages

    def _record_presence(self, presence: Sequence[tuple[str, bytes, datetime]]) -> None:
        record_presence(self._new_uow(), presence)

    def _ingest_telemetry(self, reports: list[DeviceMessage]) -> None:
        if self._telemetry is None:
            self._metrics.device_messages_dropped.labels(
                kind="telemetry", reason="not_supported"
            ).inc(len(reports))
            return
        outcomes = self._telemetry.ingest(
            [IncomingMessage(m.device_id, m.payload, m.received_at) for m in reports]
        )
        for outcome in outcomes:
            if outcome.accepted:
                self._metrics.telemetry_ingested.inc()
                continue
            reason = outcome.reason or "unknown"
            self._metrics.device_messages_dropped.labels(kind="telemetry", reason=reason).inc()
            # No device id: which device reported telemetry is not kept, not even in logs.
            _log.warning("device_message_dropped", kind="telemetry", reason=reason)

    def _ingest(self, statuses: list[DeviceMessage]) -> None:
        outcomes = ingest_status_batch(
            self._new_uow(),
            [IncomingMessage(m.device_id, m.payload, m.received_at) for m in statuses],
        )
        for outcome in outcomes:
            if outcome.accepted and outcome.report is not None:
                self._metrics.device_states.labels(state=outcome.report.state.value).inc()
                if outcome.late:
                    self._metrics.status_reports_late.inc()
            else:
                self._metrics.device_messages_dropped.labels(
                    kind="status", reason=outcome.reason or "unknown"
                ).inc()
                _log.warning(
                    "device_message_dropped",
                    kind="status",
                    device_id=outcome.device_id,
                    reason=outcome.reason,
                )


class BrokerAccountSync(_OutboxWorker):
    """Applies queued broker login changes (``fleet.services.broker_accounts``);
    ``wake()`` after queueing, so a revoked device is cut off at once."""

    name = "broker_accounts"

    def __init__(
        self,
        new_uow: UowFactory,
        accounts: BrokerAccounts,
        *,
        clock: Callable[[], datetime],
        metrics: Metrics,
        idle_poll: float = 1.0,
    ) -> None:
        super().__init__(metrics, idle_poll=idle_poll)
        self._new_uow = new_uow
        self._accounts = accounts
        self._clock = clock
        self._metrics = metrics

    def _step(self) -> None:
        # Counted before the sync, which raises while the broker is away: a gauge that
        # does not fall is how a stuck sync shows.
        pending = pending_broker_account_changes(self._new_uow())
        self._metrics.broker_account_changes_pending.set(pending)
        if pending == 0:
            self._idle()
            return
        applied = sync_broker_accounts(self._new_uow(), self._accounts, now=self._clock)
        self._metrics.broker_account_changes_applied.inc(applied)
