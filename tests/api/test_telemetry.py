"""Telemetry end to end in one process: devices running the packaged int8 model report
noised, signed histograms; the server verifies, aggregates, and releases only windows
with at least k reporters; no row and no ingest log line names a device or a raw value."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pytest
import structlog
from sqlalchemy import Engine, text

from device_sim.inference import Backend, OnDeviceModel
from device_sim.telemetry import TelemetryRecorder, window_start
from fleet.domain.records import Role
from fleet.observability import Metrics
from fleet.services.status import IncomingMessage
from fleet.services.telemetry import TelemetryIngest, TelemetryPolicy
from fleet.toolkit.packaged import packaged_model, packaged_thresholds
from fleet.toolkit.sensors import Task, generate
from fleet.transports.mqtt_fleet import DeviceMessage
from fleet.workers import DeviceInbox
from schemas.components import Thresholds
from schemas.device import Mechanism
from signer.keys import SigningKey
from signer.signing import sign_model
from tests.api.support import API, Fleet
from tests.signer.simulator import DEVICE_CLASS, START

K = 50
WINDOW_SECONDS = 60
RELEASE = "ab" * 32
INFERENCES = 4  # sensor windows per telemetry window and device


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Reporter:
    device_id: str
    key: SigningKey
    raw: list[np.ndarray] = field(default_factory=list)  # every sensor window it read
    counter: int = 0


@pytest.fixture(scope="module")
def model() -> OnDeviceModel:
    thresholds = Thresholds.model_validate_json(packaged_thresholds()).model_copy(
        update={
            "privacy": Mechanism(name="discrete_laplace", epsilon=4.0, cap=1),
            "window_seconds": WINDOW_SECONDS,
        }
    )
    return OnDeviceModel(packaged_model(), thresholds, backend=Backend.LITERT)


async def enroll(fleet: Fleet, count: int) -> list[Reporter]:
    await fleet.create_class()
    reporters = [Reporter(f"dev-{i:05d}", SigningKey.generate()) for i in range(count)]
    body = [
        {"id": r.device_id, "device_class": DEVICE_CLASS, "public_key": r.key.public.public}
        for r in reporters
    ]
    response = await fleet.client.post(
        f"{API}/devices/bulk", json=body, headers=fleet.auth(Role.OPERATOR)
    )
    assert response.status_code == 201, response.text
    return reporters


def signed_reports(
    reporters: list[Reporter], model: OnDeviceModel, start: datetime, seed: int
) -> list[DeviceMessage]:
    messages = []
    for index, reporter in enumerate(reporters):
        recorder = TelemetryRecorder(model, rng=np.random.default_rng((seed, index)))
        windows = generate(Task.GESTURE, INFERENCES, seed=(seed, index)).windows
        reporter.raw.extend(windows)
        reporter.counter += 1
        report = recorder.report(
            windows,
            device_id=reporter.device_id,
            counter=reporter.counter,
            start=start,
            release_digest=RELEASE,
            model_version="1.0.0",
        )
        assert report is not None
        payload = sign_model(report, [reporter.key]).to_bytes()
        received = start + timedelta(seconds=10)
        messages.append(DeviceMessage("telemetry", reporter.device_id, payload, received))
    return messages


def incoming(messages: list[DeviceMessage]) -> list[IncomingMessage]:
    return [IncomingMessage(m.device_id, m.payload, m.received_at) for m in messages]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], str]]:
    """Every log line written so far, structlog's and the standard library's."""
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        yield lambda: "\n".join(
            [*(str(event) for event in events), *(r.getMessage() for r in caplog.records)]
        )


def run_inbox(ingest: TelemetryIngest, fleet: Fleet, messages: list[DeviceMessage]) -> Metrics:
    inbox: queue.Queue[DeviceMessage] = queue.Queue()
    metrics = Metrics()
    worker = DeviceInbox(fleet.context.new_uow, inbox, metrics=metrics, telemetry=ingest)
    for message in messages:
        inbox.put(message)
    worker.start()
    deadline = time.monotonic() + 30
    while not inbox.empty() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    return metrics


TELEMETRY_TABLES = (
    "telemetry_aggregate", "telemetry_open_window", "telemetry_reporter", "telemetry_alert"
)  # fmt: skip


def table_text(engine: Engine, tables: tuple[str, ...] = TELEMETRY_TABLES) -> str:
    """Every row of the telemetry tables, as text to search for a device's traces."""
    with engine.connect() as connection:
        rows = [row for t in tables for row in connection.execute(text(f"SELECT * FROM {t}"))]
    return "\n".join(repr(tuple(row)) for row in rows)


def open_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return sum(
            connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
            for table in ("telemetry_open_window", "telemetry_reporter")
        )


async def aggregates(fleet: Fleet) -> list[dict[str, object]]:
    response = await fleet.client.get(
        f"{API}/telemetry/aggregates", params={"release": RELEASE}, headers=fleet.auth(Role.VIEWER)
    )
    assert response.status_code == 200, response.text
    assert response.json()["min_reporters"] == K
    items: list[dict[str, object]] = response.json()["items"]
    return items


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


BACKENDS = pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)


@BACKENDS
async def test_only_windows_with_k_reporters_are_released_and_nothing_names_a_device(
    fleet: Fleet, engine: Engine, model: OnDeviceModel, logged: Callable[[], str]
) -> None:
    reporters = await enroll(fleet, K + 10)
    first = window_start(START, WINDOW_SECONDS)
    second = first + timedelta(seconds=WINDOW_SECONDS)
    clock = Clock(first)
    ingest = TelemetryIngest(fleet.context.new_uow, clock=clock, policy=TelemetryPolicy(K))

    few = signed_reports(reporters[: K - 1], model, first, seed=1)
    metrics = run_inbox(ingest, fleet, few)
    assert counted(metrics, "fleet_telemetry_ingested_total") == K - 1
    open_text = table_text(engine)  # while the window is open: sums and opaque tokens
    assert open_rows(engine) == 1 + K - 1
    assert not [r.device_id for r in reporters if r.device_id in open_text]
    clock.now = second + timedelta(seconds=30)
    assert ingest.close_due().suppressed == 1
    assert await aggregates(fleet) == []

    many = signed_reports(reporters, model, second, seed=2)
    again = signed_reports(reporters[:1], model, second, seed=3)  # next counter, same window
    late = signed_reports(reporters[1:2], model, first, seed=4)  # a closed window
    metrics = run_inbox(ingest, fleet, [*many, *again, *late, many[5]])
    assert counted(metrics, "fleet_telemetry_ingested_total") == K + 10
    dropped = "fleet_device_messages_dropped_total"
    assert counted(metrics, dropped, kind="telemetry", reason="duplicate_report") == 1
    assert counted(metrics, dropped, kind="telemetry", reason="window_closed") == 1
    assert counted(metrics, dropped, kind="telemetry", reason="replayed") == 1
    clock.now = second + timedelta(seconds=WINDOW_SECONDS + 30)
    assert ingest.close_due().released == 1
    assert open_rows(engine) == 0  # which devices reported is forgotten

    (released,) = await aggregates(fleet)
    assert released["reporters"] == K + 10
    # the device's whole report: input summaries, confidence, class, latency, counters
    histograms = released["histograms"]
    assert isinstance(histograms, dict) and "latency_us" in histograms
    assert set(released["counters"]) == {"inference_errors", "reboots"}  # type: ignore[call-overload]
    assert released["window_start"].startswith(second.isoformat()[:19])  # type: ignore[union-attr]

    stored, lines = table_text(engine), logged()
    assert stored and lines
    for reporter in reporters:
        assert reporter.device_id not in stored
        assert reporter.device_id not in lines
        assert reporter.key.public.public not in stored
    raw_values = {repr(float(v)) for r in reporters for w in r.raw for v in w.reshape(-1)[::17]}
    assert not {v for v in raw_values if v in stored or v in lines}


@BACKENDS
async def test_open_windows_survive_a_restart_and_still_refuse_a_second_report(
    fleet: Fleet, engine: Engine, model: OnDeviceModel
) -> None:
    """A new ingest over the same database (a restarted server, or another replica)
    continues the window: its sums and its reporters, duplicates included."""
    reporters = await enroll(fleet, K + 10)
    start = window_start(START, WINDOW_SECONDS)
    clock = Clock(start)
    reports = incoming(signed_reports(reporters, model, start, seed=7))
    before = TelemetryIngest(fleet.context.new_uow, clock=clock, policy=TelemetryPolicy(K))
    assert all(o.accepted for o in before.ingest(reports[:30]))

    after = TelemetryIngest(fleet.context.new_uow, clock=clock, policy=TelemetryPolicy(K))
    again = incoming(signed_reports(reporters[:1], model, start, seed=8))  # same window
    outcomes = after.ingest([*reports[30:], *again])
    assert all(o.accepted for o in outcomes[:-1])
    assert outcomes[-1].reason == "duplicate_report"

    clock.now = start + timedelta(seconds=WINDOW_SECONDS + 30)
    assert after.close_due().released == 1
    (released,) = await aggregates(fleet)
    assert released["reporters"] == K + 10
    assert before.close_due().released == 0  # nothing left for the other one to close
