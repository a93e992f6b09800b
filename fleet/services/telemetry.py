"""Ingesting telemetry: verified, summed into its cohort aggregate, released at close.

A report is used only if the enrolled device key signed it, its counter is above the
device's last one (the counter status uses too), and its window is still open. It is then
added to the open aggregate of its (release, model version, window, cohort) — the cohort
is the device's class — under a reporter token ``HMAC(window secret, device id)``: a
second report from the same device in that window is refused. Open aggregates, their
tokens and secrets are rows (``fleet.store``), written in the batch's transaction with
the devices' counters: a restart loses nothing, and every replica adds to the same
windows. Closing a window (``grace`` after its end) deletes its row, secret and tokens
in the transaction that stores its release, so which devices reported is forgotten. A
closed aggregate is released — central discrete Laplace noise, debiased proportions —
only with at least ``k`` reporters; released aggregates are deleted after the retention
period. Nothing here logs a device id or a histogram value.

A batch costs a fixed number of queries — its devices, one counter update per 200 of
them, its windows, their known tokens — whatever its size: ``bench/telemetry.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from fleet.domain.aggregation import (
    DEFAULT_CENTRAL_EPSILON,
    DEFAULT_MIN_REPORTERS,
    AggregateKey,
    AggregationError,
    DuplicateReport,
    OpenAggregate,
    OpenWindow,
    TooFewReporters,
    release,
)
from fleet.domain.drift import AlertState
from fleet.domain.records import DeviceSigner
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


class _Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class _Verified:
    index: int  # the message's place in its batch
    device: DeviceSigner
    report: TelemetryReport
    received_at: datetime

    @property
    def key(self) -> AggregateKey:
        report = self.report
        return AggregateKey(
            report.release_digest, report.model_version, report.window.start,
            self.device.device_class,
        )  # fmt: skip


class TelemetryIngest:
    """Telemetry ingestion and window closing over the store. Concurrent callers (threads,
    replicas) are serialised by the database: SQLite's write lock, PostgreSQL's row locks."""

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
        self._purged_at: datetime | None = None

    def ingest(self, messages: Sequence[IncomingMessage]) -> list[TelemetryOutcome]:
        """Judge each message; one transaction for the whole batch."""
        outcomes = [TelemetryOutcome(True)] * len(messages)
        with self._new_uow() as uow:
            signers = uow.devices.signers({m.device_id for m in messages})
            verified: list[_Verified] = []
            counters: dict[str, int] = {}  # a device's last counter, this batch included
            for index, message in enumerate(messages):
                try:
                    verified.append(self._verify(index, message, signers, counters))
                except _Refused as refused:
                    outcomes[index] = TelemetryOutcome(False, refused.code)
                except (DeviceMessageRefused, DocumentError) as exc:
                    outcomes[index] = TelemetryOutcome(False, exc.code)
            for index, code in self._add(uow, verified).items():
                outcomes[index] = TelemetryOutcome(False, code)
            uow.commit()
        return outcomes

    def _verify(
        self,
        index: int,
        message: IncomingMessage,
        signers: Mapping[str, DeviceSigner],
        counters: dict[str, int],
    ) -> _Verified:
        device = signers.get(message.device_id)
        if device is None:
            raise _Refused("unknown_device")
        if device.revoked:
            raise _Refused("revoked")
        report = verify_device_message(
            message.payload,
            device_id=device.id,
            key=PublicKey(public=device.public_key_hex),
            last_counter=counters.get(device.id, device.status_counter),
            model=TelemetryReport,
        )
        counters[device.id] = report.counter
        return _Verified(index, device, report, message.received_at)

    def _add(self, uow: UnitOfWork, verified: Sequence[_Verified]) -> dict[int, str]:
        """Add the verified reports to their windows; the refused ones' codes by index.

        Counters advance first, for the whole batch in one statement: a report whose
        counter lost to a concurrent message (a status on another replica) is refused as
        replayed; an authentic report refused later (a closed window) still uses its
        counter, so it cannot be replayed either.
        """
        now = self._clock()  # the clock that closes windows judges lateness too
        latest = {v.device.id: (v.report.counter, v.received_at) for v in verified}
        advanced = uow.devices.accept_counters(latest)
        refused = {v.index: "replayed" for v in verified if v.device.id not in advanced}
        verified = [v for v in verified if v.index not in refused]
        windows = uow.open_telemetry.lock({v.key for v in verified})
        new_tokens: dict[int, set[str]] = {}  # window id -> tokens new in this batch
        known: dict[int, set[str]] = {}
        for item in verified:
            try:
                window = windows.get(item.key) or self._start(uow, item, now)
                if window.id not in known:
                    batch = {window.token(v.device.id) for v in verified if v.key == item.key}
                    known[window.id] = uow.open_telemetry.known_tokens(window.id, batch)
                    new_tokens[window.id] = set()
                windows[item.key] = self._join(window, item, now, known[window.id],
                                               new_tokens[window.id])  # fmt: skip
            except _Refused as exc:
                refused[item.index] = exc.code
            except AggregationError as exc:
                refused[item.index] = exc.code
        for window in windows.values():
            if new_tokens.get(window.id):
                uow.open_telemetry.save(window, new_tokens[window.id])
        return refused

    def _join(
        self,
        window: OpenWindow,
        item: _Verified,
        now: datetime,
        known: set[str],
        new_tokens: set[str],
    ) -> OpenWindow:
        """The window with this report in it (``new_tokens`` gains its token), or refuse."""
        report = item.report
        if window.closes_at <= now:
            raise _Refused("window_closed")
        if report.window.start > now + self._policy.grace:
            raise _Refused("window_not_started")
        if report.window.seconds != window.seconds:
            raise _Refused("window_mismatch")
        token = window.token(item.device.id)
        if token in known or token in new_tokens:
            raise DuplicateReport("a report from this device is already in this window")
        added = window.aggregate.add(report.mechanism, report.histograms, report.counters)
        new_tokens.add(token)
        return replace(window, aggregate=added)

    def _start(self, uow: UnitOfWork, item: _Verified, now: datetime) -> OpenWindow:
        report = item.report
        if report.window.start > now + self._policy.grace:
            raise _Refused("window_not_started")
        closes_at = report.window.start + timedelta(seconds=report.window.seconds)
        closes_at += self._policy.grace
        if closes_at <= now:
            raise _Refused("window_closed")  # never open a window only to close it
        sizes = {name: len(h) for name, h in report.histograms.items()}
        aggregate = OpenAggregate.start(item.key, report.mechanism, sizes, report.counters)
        return uow.open_telemetry.start(aggregate, seconds=report.window.seconds,
                                        closes_at=closes_at)  # fmt: skip

    def close_due(self) -> ClosedWindows:
        """Close every window ``grace`` past its end: release or suppress, then purge."""
        now = self._clock()
        purge = self._purged_at is None or now - self._purged_at >= _PURGE_EVERY
        released, suppressed, purged = 0, 0, 0
        digests: set[str] = set()
        with self._new_uow() as uow:
            for window in uow.open_telemetry.due(now):
                digests.add(window.aggregate.key.release_digest)
                closed = window.aggregate.close()
                uow.open_telemetry.drop(window.id)  # the tokens and the secret go here
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
            if purge:
                purged = uow.telemetry.purge(before=now - self._policy.retention)
                self._purged_at = now
            uow.commit()
        for digest in sorted(digests):
            self._step_alert(digest, now)
        if digests or purged:
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
        with self._new_uow() as uow:
            was_open, quiet = uow.open_telemetry.alert(release_digest)
            state, event = AlertState(was_open, quiet).step(drift.decision)
            uow.open_telemetry.set_alert(release_digest, open=state.open, quiet=state.quiet, at=now)
            flagged = sorted(f"{s.histogram}@{s.cohort}" for s in drift.decision.flagged)
            if event is not None:
                uow.audit.append(
                    at=now,
                    actor="telemetry",
                    action=f"telemetry.drift_alert_{event.value}",
                    subject=f"release:{release_digest}",
                    detail={"window_start": drift.window_start.isoformat(), "flagged": flagged},
                )
            uow.commit()
        if event is not None:
            # not event=: structlog's first argument is the event
            _log.info("drift_alert", alert=event.value, release=release_digest, flagged=flagged)
