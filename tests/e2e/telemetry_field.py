"""The field of ``tests/e2e/test_telemetry_drift.py``: a server on a virtual clock and
devices that install releases and report telemetry over real MQTT.

Each device is ``device_sim``'s real update logic (``Device``: accept, download over
HTTP, verify, install, boot, confirm, signed status) on its own MQTT link and HTTP
connection, as ``device_sim.fleet.DeviceAgent`` runs it; the test keeps the ``Device`` so
that each window the device reports telemetry for the release it really runs
(``device_sim.telemetry.report_window``: its running release digest and model version,
its own key, the message counter it shares with its status reports). The world's
conditions are a function of the device, so they can depend on the release it runs.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from device_sim.device import Device
from device_sim.flash import Flash
from device_sim.http_fetch import HttpArtifactFetcher
from device_sim.mailbox import Mailbox
from device_sim.mqtt_link import DeviceLink, MqttHub
from device_sim.state import Slot, StateStore, provision
from device_sim.telemetry import TelemetryRecorder, report_window
from device_sim.wire import status_topic
from fleet.local_setup import Trust, serve_in_process
from fleet.settings import Settings
from fleet.toolkit.sensors import FieldConditions, Task, generate
from fleet.transports.embedded_broker import Broker
from schemas import DeviceState, Envelope, StatusReport
from signer.fileio import read_envelope
from signer.keys import SigningKey

__all__ = [
    "FieldDevice",
    "FieldFleet",
    "VirtualClock",
    "api",
    "metric",
    "running_server",
    "until",
    "wait_for",
]

ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)


class VirtualClock:
    """Real time plus an offset the test moves: the server's and the devices' clock."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set(self, moment: datetime) -> None:
        self.offset = moment - datetime.now(UTC)


@contextmanager
def running_server(
    trust: Trust, workdir: Path, broker: Broker, clock: VirtualClock, *, admin: str, grace: int
) -> Iterator[str]:
    """A server in this process on ``clock``, its rollout engine with the drift gate."""
    settings = Settings(
        data_dir=workdir,
        mqtt_url=broker.server_url(),
        root_path=trust.root,
        director_key_path=trust.director_key,
        bootstrap_admin_token=admin,
        coap_port=0,
        telemetry_grace_seconds=grace,
        telemetry_drift_gate=True,
    )
    with serve_in_process(settings, clock=clock) as (_, base_url):
        yield base_url


def metric(base_url: str, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+]+)$", httpx.get(f"{base_url}/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Block (devices idle) until ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    """Wait, letting the devices run, until ``predicate`` holds; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


class _StatusSink:
    """Publishes a device's signed status on its link; ``observer`` sees each report."""

    def __init__(self, link: DeviceLink) -> None:
        self._link = link
        self.observer: Callable[[StatusReport], None] = lambda _report: None

    async def send_status(self, report: StatusReport, envelope: Envelope) -> None:
        self._link.publish(status_topic(report.device_id), envelope.to_bytes())
        self.observer(report)


@dataclass
class FieldDevice:
    index: int
    key: SigningKey
    device: Device
    link: DeviceLink
    mailbox: Mailbox
    http: httpx.AsyncClient
    recorder: TelemetryRecorder
    told: set[str] = field(default_factory=set)  # releases it was directed to
    latest: StatusReport | None = None
    task: asyncio.Task[None] | None = None

    @property
    def device_id(self) -> str:
        return self.device.device_id

    @property
    def running(self) -> str | None:
        """The release this device runs, confirmed (not on trial, nothing pending)."""
        state = self.device.state
        if state.trial or state.pending is not None or state.running is None:
            return None
        return state.running.release_digest

    def reported_on(
        self, digest: str, states: frozenset[DeviceState] = frozenset({DeviceState.HEALTHY})
    ) -> bool:
        """Runs ``digest`` and said so in its last status report, in one of ``states``."""
        latest = self.latest
        return (
            self.running == digest
            and latest is not None
            and latest.state in states
            and latest.running_release_digest == digest
        )

    def observe(self, report: StatusReport) -> None:
        if report.state is DeviceState.NOTIFIED and report.release_digest:
            self.told.add(report.release_digest)
        self.latest = report

    async def run(self) -> None:
        await self.device.start()
        while True:
            await self.device.on_desired(await self.mailbox.get())


class FieldFleet:
    """Devices, their recorders and the windows they report."""

    def __init__(self, devices: list[FieldDevice]) -> None:
        self.devices = devices
        self.sent = 0  # telemetry reports sent

    @classmethod
    async def connect(
        cls,
        *,
        keys: list[SigningKey],
        recorders: list[TelemetryRecorder],
        hub: MqttHub,
        broker: Broker,
        base_url: str,
        trust: Trust,
        state_dir: Path,
        device_class: str,
        clock: Callable[[], datetime],
        factory: Slot | None = None,
    ) -> FieldFleet:
        """Provision (with ``factory`` in slot a), connect and start the devices."""
        root = read_envelope(trust.root, what="root")
        tls = ssl.create_default_context()  # one context: each costs ~15 ms
        devices = []
        for i, (key, recorder) in enumerate(zip(keys, recorders, strict=True)):
            device_id = f"tel-{i:04d}"
            store = StateStore(state_dir / device_id / "state.json", fsync=False)
            provision(
                store, device_id=device_id, device_class=device_class, root=root, factory=factory
            )
            mailbox = Mailbox()
            link = DeviceLink(hub, device_id=device_id, host=broker.host, port=broker.port,
                              on_desired=mailbox.put, rng=random.Random(i))  # fmt: skip
            http = httpx.AsyncClient(verify=tls, timeout=10.0, limits=ONE_CONNECTION)
            fetcher = HttpArtifactFetcher(http, f"{base_url}/api/v1")
            sink = _StatusSink(link)
            device = Device(
                key=key,
                store=store,
                flash=Flash(state_dir / device_id),
                fetcher=fetcher,
                sink=sink,
                clock=clock,
                rng=random.Random(i),
            )
            devices.append(FieldDevice(i, key, device, link, mailbox, http, recorder))
            sink.observer = devices[-1].observe
        await asyncio.gather(*(d.link.connect(timeout=30) for d in devices))
        for d in devices:
            d.task = asyncio.create_task(d.run(), name=d.device_id)
        return cls(devices)

    async def close(self) -> None:
        """Stop every device (an install under way is cut short) and close its links."""
        tasks = [d.task for d in self.devices if d.task is not None]
        if not tasks:
            return
        for d in self.devices:
            d.task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(d.link.close() for d in self.devices), return_exceptions=True)
        await asyncio.gather(*(d.http.aclose() for d in self.devices), return_exceptions=True)

    def healthy_on(self, digest: str) -> list[FieldDevice]:
        """Devices that installed ``digest`` and confirmed it."""
        return [d for d in self.devices if d.reported_on(digest)]

    def all_on(self, digest: str) -> bool:
        """Every device runs ``digest`` and said so (idle from the factory, or healthy)."""
        either = frozenset({DeviceState.IDLE, DeviceState.HEALTHY})
        return all(d.reported_on(digest, either) for d in self.devices)

    def running(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.devices:
            key = d.running or "none"
            counts[key] = counts.get(key, 0) + 1
        return counts

    async def window(
        self,
        *,
        start: datetime,
        index: int,
        conditions: Callable[[FieldDevice], FieldConditions],
        inferences: int,
    ) -> dict[str, int]:
        """Every device reports window ``start`` under ``conditions``; returns how many
        reported per release (what each device's own state says it runs)."""
        publishes: list[asyncio.Future[None]] = []
        reported: dict[str, int] = {}
        for d in self.devices:

            async def publish(topic: str, payload: bytes, link: DeviceLink = d.link) -> None:
                publishes.append(link.publish(topic, payload))

            windows = generate(
                Task.GESTURE, inferences, seed=(index, d.index), conditions=conditions(d)
            ).windows
            running = d.running
            sent = await report_window(d.device, d.recorder, windows, start=start, publish=publish)
            assert sent and running is not None, f"{d.device_id} sent no telemetry"
            reported[running] = reported.get(running, 0) + 1
            await asyncio.sleep(0)  # let the links send while the next devices compute
        await asyncio.gather(*publishes)
        self.sent += sum(reported.values())
        return reported


def api(base_url: str, token: str, path: str, **params: Any) -> Any:
    response = httpx.get(
        f"{base_url}/api/v1{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    response.raise_for_status()
    return response.json()
