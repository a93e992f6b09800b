"""Ingesting telemetry: verified, summed into its cohort aggregate, released at close.

A report is used only if the enrolled device key signed it, its counter is above the
device's last one (the counter status uses too), and its window is still open. It is then
added to the open aggregate of its (release, model version, window, cohort) — the cohort
is the device's class — under a reporter token ``HMAC(window key, device id)``: a second
report from the same device in that window is refused. Open aggregates and their window
keys live in this process's memory only; closing a window (``grace`` after its end)
drops both, so which devices reported is forgotten. A closed aggregate is released —
central discrete Laplace noise, debiased proportions — only with at least ``k``
reporters, and only released aggregates are stored; they are deleted after the
retention period. Nothing here logs a device id or a histogram value.

One process owns the open aggregates: with several server replicas, a window's reports
must reach one of them (one MQTT shared-subscription group member per window is not
guaranteed), which is a known limit (docs/telemetry.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from fleet.domain.aggregation import (
    DEFAULT_CENTRAL_EPSILON,
    DEFAULT_MIN_REPORTERS,
    AggregateKey,
    AggregationError,
    OpenAggregate,
    TooFewReporters,
    release,
)
from fleet.domain.drift import AlertState
from fleet.services.device_auth import DeviceMessageRefused, verify_device_message
from fleet.services.drift import assess_release
from fleet.services.status import IncomingMessage
from fleet.store import UnitOfWork
from schemas import DocumentError, PublicKey
from schemas.device import TelemetryReport
from schemas.privacy import NoiseSampler, opendp_discrete_laplace

__all__ = ["ClosedWindows", "TelemetryIngest", "TelemetryOutcome", "TelemetryPolicy"]

_log = structlog.get_logger(__name__)
UowFactory = Callable[[], UnitOfWork]
_PURGE_EVERY = timedelta(minutes=10)


@dataclass(frozen=True)
class TelemetryPolicy:
    min_reporters: int = DEFAULT_MIN_REPORTERS  # k
    central_epsilon: float = DEFAULT_CENTRAL_EPSILON
    grace: timedelta = timedelta(seconds=5)  # late reports after a window's end
    retention: timedelta = timedelta(days=90)  # released aggregates are kept this long


@dataclass(frozen=True)
class TelemetryOutcome:
    """Deliberately without the device id: callers log and count outcomes."""

    accepted: bool
    reason: str | None = None  # a stable code when refused


@dataclass(frozen=True)
class ClosedWindows:
    released: int = 0
    suppressed: int = 0  # fewer than k reporters: nothing stored
    purged: int = 0


@dataclass
class _Window:
    aggregate: OpenAggregate
    seconds: int
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def token(self, device_id: str) -> str:
        return hmac.new(self.key, device_id.encode(), hashlib.sha256).hexdigest()

    def closes_at(self, grace: timedelta) -> datetime:
        return self.aggregate.key.window_start + timedelta(seconds=self.seconds) + grace


class _Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class TelemetryIngest:
    """The open aggregates of one server process; thread-safe."""

    def __init__(
        self,
        new_uow: UowFactory,
        *,
        clock: Callable[[], datetime],
        policy: TelemetryPolicy | None = None,
        noise: NoiseSampler = opendp_discrete_laplace,
    ) -> None:
        self._new_uow = new_uow
        self._clock = clock
        self._policy = policy or TelemetryPolicy()
        self._noise = noise
        self._open: dict[AggregateKey, _Window] = {}
        self._lock = threading.Lock()
        self._purged_at: datetime | None = None
        self._alerts: dict[str, AlertState] = {}

    @property
    def open_windows(self) -> int:
        return len(self._open)

    def ingest(self, messages: Sequence[IncomingMessage]) -> list[TelemetryOutcome]:
        """Judge each message; one transaction for the batch's counters."""
        with self._lock:
            pending: dict[AggregateKey, _Window] = {}
            with self._new_uow() as uow:
                outcomes = [self._judge(uow, m, pending) for m in messages]
                uow.commit()
            self._open.update(pending)
        return outcomes

    def close_due(self) -> ClosedWindows:
        """Close every window ``grace`` past its end: release or suppress, then purge."""
        now = self._clock()
        with self._lock:
            due = [w for w in self._open.values() if w.closes_at(self._policy.grace) <= now]
            for window in due:
                del self._open[window.aggregate.key]
        purge = self._purged_at is None or now - self._purged_at >= _PURGE_EVERY
        if not due and not purge:
            return ClosedWindows()
        self._purged_at = now
        released, suppressed = 0, 0
        with self._new_uow() as uow:
            for window in due:
                closed = window.aggregate.close()  # the tokens and the window key go here
                try:
                    published = release(
                        closed,
                        min_reporters=self._policy.min_reporters,
                        central_epsilon=self._policy.central_epsilon,
                        noise=self._noise,
                    )
                except TooFewReporters:
                    suppressed += 1
                    continue
                uow.telemetry.add(published, window_seconds=window.seconds, released_at=now)
                released += 1
            purged = uow.telemetry.purge(before=now - self._policy.retention)
            uow.commit()
        for digest in sorted({w.aggregate.key.release_digest for w in due}):
            self._step_alert(digest, now)
        if due or purged:
            _log.info(
                "telemetry_windows_closed",
                released=released,
                suppressed=suppressed,
                purged=purged,
            )
        return ClosedWindows(released, suppressed, purged)

    def _step_alert(self, release_digest: str, now: datetime) -> None:
        """Judge the release's newest window; an alert opening or closing is audited."""
        latest = assess_release(self._new_uow(), release_digest, history=1)
        if not latest:
            return
        drift = latest[-1]
        state, event = self._alerts.get(release_digest, AlertState()).step(drift.decision)
        self._alerts[release_digest] = state
        if event is None:
            return
        flagged = sorted(f"{s.histogram}@{s.cohort}" for s in drift.decision.flagged)
        with self._new_uow() as uow:
            uow.audit.append(
                at=now,
                actor="telemetry",
                action=f"telemetry.drift_alert_{event.value}",
                subject=f"release:{release_digest}",
                detail={"window_start": drift.window_start.isoformat(), "flagged": flagged},
            )
            uow.commit()
        _log.info("drift_alert", event=event.value, release=release_digest, flagged=flagged)

    def _judge(
        self, uow: UnitOfWork, message: IncomingMessage, pending: dict[AggregateKey, _Window]
    ) -> TelemetryOutcome:
        try:
            self._add(uow, message, pending)
        except _Refused as refused:
            return TelemetryOutcome(False, refused.code)
        except (DeviceMessageRefused, DocumentError, AggregationError) as exc:
            return TelemetryOutcome(False, exc.code)
        return TelemetryOutcome(True)

    def _add(
        self, uow: UnitOfWork, message: IncomingMessage, pending: dict[AggregateKey, _Window]
    ) -> None:
        device = uow.devices.get(message.device_id)
        if device is None:
            raise _Refused("unknown_device")
        report = verify_device_message(
            message.payload,
            device_id=device.id,
            key=PublicKey(public=device.public_key_hex),
            last_counter=device.status_counter,
            model=TelemetryReport,
        )
        key = AggregateKey(
            report.release_digest, report.model_version, report.window.start, device.device_class
        )
        window = pending.get(key) or self._open.get(key) or self._start(key, report)
        now = self._clock()  # the clock that closes windows judges lateness too
        if window.closes_at(self._policy.grace) <= now:
            raise _Refused("window_closed")
        if report.window.start > now + self._policy.grace:
            raise _Refused("window_not_started")
        if report.window.seconds != window.seconds:
            raise _Refused("window_mismatch")
        added = window.aggregate.add(window.token(device.id), report.mechanism, report.histograms)
        if not uow.devices.accept_counter(device.id, report.counter, seen_at=message.received_at):
            raise _Refused("replayed")
        pending[key] = _Window(added, window.seconds, window.key)

    @staticmethod
    def _start(key: AggregateKey, report: TelemetryReport) -> _Window:
        sizes: Mapping[str, int] = {name: len(h) for name, h in report.histograms.items()}
        return _Window(OpenAggregate.start(key, report.mechanism, sizes), report.window.seconds)
