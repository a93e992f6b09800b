"""Fixtures for simulated devices on a real Mosquitto and a real HTTP artifact server."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from device_sim.errors import PowerLoss
from device_sim.faults import Faults
from device_sim.fleet import DeviceAgent, Endpoints
from device_sim.http_fetch import FetchPolicy
from device_sim.mqtt_link import MqttHub
from device_sim.state import PersistentState, StateStore, provision
from fleet.transports.embedded_broker import Broker
from schemas import StatusReport
from signer.keys import SigningKey
from tests.device_sim.director import START, Director, Release, ServerClient
from tests.support.artifact_server import ArtifactServer

FAST_RETRIES = FetchPolicy(deadline=10.0, attempts=12, backoff=0.01, max_backoff=0.05)


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@dataclass
class SimDevice:
    device_id: str
    key: SigningKey
    directory: Path
    task: asyncio.Task[None] | None = None
    agent: DeviceAgent | None = None

    def state(self) -> PersistentState:
        return StateStore(self.directory / "state.json").load()


@dataclass
class Sim:
    """Devices in this test's event loop, talking to the test's broker and artifact server."""

    director: Director
    server: ServerClient
    artifacts: ArtifactServer
    endpoints: Endpoints
    hub: MqttHub
    http: httpx.AsyncClient
    root_dir: Path
    devices: list[SimDevice] = field(default_factory=list)

    def publish_release(self, release: Release) -> None:
        for blob in release.blobs.values():
            self.artifacts.add(blob)

    def provision(self, device_id: str, *, factory: Release | None = None) -> SimDevice:
        device = SimDevice(device_id, SigningKey.generate(), self.root_dir / device_id)
        provision(
            StateStore(device.directory / "state.json"),
            device_id=device_id,
            device_class="nrf52840-kws",
            root=self.director.root,
            factory=self.director.factory_slot(factory) if factory else None,
        )
        self.devices.append(device)
        return device

    def start(self, device: SimDevice, *, faults: Faults | None = None, seed: int = 0) -> None:
        device.agent = DeviceAgent(
            key=device.key,
            directory=device.directory,
            device_id=device.device_id,
            endpoints=self.endpoints,
            hub=self.hub,
            http=self.http,
            clock=lambda: START,
            rng=random.Random(seed),
            faults=faults or Faults(),
            fetch_policy=FAST_RETRIES,
        )
        device.task = asyncio.create_task(device.agent.run())

    async def stop(self, device: SimDevice) -> None:
        if device.task is not None:
            device.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, PowerLoss):
                await device.task
            device.task = None

    def statuses(self, device: SimDevice) -> list[StatusReport]:
        return self.server.statuses(device.device_id, device.key.public)

    async def wait_for_state(self, device: SimDevice, state: str, timeout: float = 10.0) -> None:
        await eventually(
            lambda: any(r.state.value == state for r in self.statuses(device)), timeout
        )


@pytest.fixture
def director() -> Director:
    return Director()


@pytest.fixture
def artifacts() -> Iterator[ArtifactServer]:
    with ArtifactServer() as server:
        yield server


@pytest.fixture
def server(mosquitto: Broker) -> Iterator[ServerClient]:
    client = ServerClient(mosquitto)
    yield client
    client.close()


@pytest.fixture
async def sim(
    director: Director,
    server: ServerClient,
    artifacts: ArtifactServer,
    mosquitto: Broker,
    tmp_path: Path,
) -> AsyncIterator[Sim]:
    hub = MqttHub()
    async with httpx.AsyncClient(timeout=5.0) as http:
        harness = Sim(
            director=director,
            server=server,
            artifacts=artifacts,
            endpoints=Endpoints(mosquitto.host, mosquitto.port, artifacts.base_url),
            hub=hub,
            http=http,
            root_dir=tmp_path / "devices",
        )
        try:
            yield harness
        finally:
            for device in harness.devices:
                await harness.stop(device)
            await hub.aclose()
