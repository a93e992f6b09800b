"""Field drift end to end: real Mosquitto, a real server, 500 devices running the int8 model.

Each simulated device reads 4 sensor windows per telemetry window (``fleet.toolkit.sensors``,
the gesture task), runs the packaged int8 model on them with LiteRT, histograms the
input summaries, confidence and predicted class over the thresholds' bins, caps to C = 1,
adds OpenDP's discrete Laplace noise (local eps = 4), signs the report with its own key
and publishes it over its own MQTT connection. Windows are 60 s of the server's clock,
which the test moves forward, so a window takes a few seconds of real time.

1. Release A, all 500 devices: no alert over 10 clean windows; then a 30 % gain drift on
   half of them opens an alert within 3 windows (API drift report and audit log).
2. The drift gate (what the rollout engine's ``Gates.extra`` runs): 250 devices report
   release B (the canary) and drift, 250 stay on A and do not → hold; the same shift on
   every device → pass (a shared shift).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from device_sim.inference import Backend, OnDeviceModel
from device_sim.mqtt_link import DeviceLink, MqttHub
from device_sim.telemetry import TelemetryRecorder, telemetry_topic, window_start
from fleet.app import build_server
from fleet.client import AdminClient
from fleet.domain.drift import Verdict
from fleet.http_server import serving
from fleet.local_setup import Trust
from fleet.services.drift import drift_gate
from fleet.settings import Settings
from fleet.store import SqlUnitOfWork, make_engine
from fleet.store.db import make_session_factory
from fleet.toolkit.packaged import packaged_model, packaged_reference, packaged_thresholds
from fleet.toolkit.sensors import FieldConditions, Task, generate
from fleet.transports.embedded_broker import Broker
from schemas.components import Thresholds
from schemas.device import Mechanism
from schemas.privacy import simulated_discrete_laplace
from signer.keys import SigningKey
from signer.signing import sign_model
from tests.e2e.fleet_run import DEVICE_CLASS, raise_file_limit
from tests.e2e.test_mqtt_delivery import register_signed_release

pytestmark = pytest.mark.slow
DEVICES = 500
INFERENCES = 4
WINDOW = timedelta(seconds=60)
GRACE = timedelta(seconds=5)
ADMIN = "tf_" + secrets.token_urlsafe(32)
DRIFT = FieldConditions(gain_drift=1.3)


@dataclass
class SimDevice:
    device_id: str
    key: SigningKey
    link: DeviceLink
    counter: int = 0


class VirtualClock:
    """Real time plus an offset the test moves: the server's clock."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set(self, moment: datetime) -> None:
        self.offset = moment - datetime.now(UTC)


@contextmanager
def running_server(
    trust: Trust, workdir: Path, broker: Broker, clock: VirtualClock
) -> Iterator[str]:
    settings = Settings(
        data_dir=workdir,
        mqtt_url=broker.server_url(),
        root_path=trust.root,
        director_key_path=trust.director_key,
        bootstrap_admin_token=ADMIN,
        coap_port=0,
        telemetry_grace_seconds=int(GRACE.total_seconds()),
    )
    server = build_server(settings, clock=clock)
    server.start()
    try:
        with serving(server.api) as base_url:
            yield base_url
    finally:
        server.stop()


def metric(base_url: str, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+]+)$", httpx.get(f"{base_url}/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Field:
    """The devices, their model and the world's conditions."""

    def __init__(self, base_url: str, devices: list[SimDevice], model: OnDeviceModel) -> None:
        self.base_url = base_url
        self.devices = devices
        self.model = model
        self.recorders = [
            # Seeded simulation of the devices' OpenDP noise (the same distribution,
            # schemas.privacy): the test is reproducible; OpenDP itself is tested in
            # tests/telemetry.
            TelemetryRecorder(
                model,
                rng=np.random.default_rng(i),
                noise=simulated_discrete_laplace(np.random.default_rng(100_000 + i)),
            )
            for i in range(len(devices))
        ]
        self.sent = 0
        self.released = 0

    async def window(
        self,
        clock: VirtualClock,
        start: datetime,
        releases: Callable[[int], str],
        conditions: Callable[[int], FieldConditions],
        index: int,
    ) -> None:
        clock.set(start + timedelta(seconds=1))
        publishes = []
        for i, device in enumerate(self.devices):
            windows = generate(
                Task.GESTURE, INFERENCES, seed=(index, i), conditions=conditions(i)
            ).windows
            device.counter += 1
            report = self.recorders[i].report(
                windows,
                device_id=device.device_id,
                counter=device.counter,
                start=start,
                release_digest=releases(i),
                model_version=VERSIONS[releases(i)],
            )
            assert report is not None
            envelope = sign_model(report, [device.key])
            publishes.append(
                device.link.publish(telemetry_topic(device.device_id), envelope.to_bytes())
            )
        await asyncio.gather(*publishes)
        self.sent += len(self.devices)
        wait_for(lambda: metric(self.base_url, "fleet_telemetry_ingested_total") >= self.sent)
        clock.set(start + WINDOW + GRACE + timedelta(seconds=1))
        cohorts = len({releases(i) for i in range(len(self.devices))})
        self.released += cohorts
        wait_for(lambda: released_windows(self.base_url) >= self.released)


VERSIONS: dict[str, str] = {}


def released_windows(base_url: str) -> int:
    total = 0
    for digest in VERSIONS:
        response = httpx.get(
            f"{base_url}/api/v1/telemetry/aggregates",
            params={"release": digest, "limit": 1000},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        total += len(response.json()["items"])
    return total


def api_get(base_url: str, path: str, **params: Any) -> Any:
    response = httpx.get(
        f"{base_url}/api/v1{path}",
        params=params,
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=120,
    )
    response.raise_for_status()
    return response.json()


def drift_windows(base_url: str, digest: str) -> list[dict[str, Any]]:
    windows: list[dict[str, Any]] = api_get(
        base_url, "/telemetry/drift", release=digest, history=48
    )["windows"]
    return windows


async def alerts(base_url: str, digest: str) -> list[tuple[int, str, float]]:
    """The streams of windows that alerted, for a failure message."""
    return [
        (index, s["histogram"], s["p_value"])
        for index, w in enumerate(drift_windows(base_url, digest))
        if w["alert"]
        for s in w["streams"]
        if s["p_value"] < 0.01
    ]


async def connect(broker: Broker, hub: MqttHub, count: int) -> list[SimDevice]:
    devices = []
    for i in range(count):
        device_id = f"tel-{i:04d}"
        link = DeviceLink(hub, device_id=device_id, host=broker.host, port=broker.port,
                          on_desired=lambda _payload: None)  # fmt: skip
        devices.append(SimDevice(device_id, SigningKey.generate(), link))
    await asyncio.gather(*(d.link.connect(timeout=30) for d in devices))
    return devices


def device_model() -> OnDeviceModel:
    thresholds = Thresholds.model_validate_json(packaged_thresholds()).model_copy(
        update={
            "privacy": Mechanism(name="discrete_laplace", epsilon=4.0, cap=1),
            "window_seconds": int(WINDOW.total_seconds()),
        }
    )
    return OnDeviceModel(packaged_model(), thresholds, backend=Backend.LITERT)


async def scenario(trust: Trust, broker: Broker, workdir: Path) -> None:
    clock = VirtualClock()
    hub = MqttHub()
    with running_server(trust, workdir / "server", broker, clock) as base_url, AdminClient(
        base_url, ADMIN
    ) as client:  # fmt: skip
        client.create_device_class(DEVICE_CLASS, ram_bytes=1 << 20, flash_bytes=1 << 22)
        old = register_signed_release(client, trust, workdir / "a", "1.0.0")
        new = register_signed_release(client, trust, workdir / "b", "1.1.0")
        VERSIONS.update({old: "1.0.0", new: "1.1.0"})
        sha = hashlib.sha256(packaged_model()).hexdigest()
        client.register_model_reference(sha, packaged_reference())
        devices = await connect(broker, hub, DEVICES)
        body = [{"id": d.device_id, "device_class": DEVICE_CLASS, "public_key": d.key.public.public}
                for d in devices]  # fmt: skip
        client.enroll(json.dumps(body).encode())
        field = Field(base_url, devices, device_model())
        start = window_start(clock(), int(WINDOW.total_seconds())) + WINDOW

        clean, drifted = FieldConditions(), lambda i: DRIFT if i % 2 else FieldConditions()
        for index in range(10):
            await field.window(clock, start + index * WINDOW, lambda i: old, lambda i: clean, index)
        assert not any(w["alert"] for w in drift_windows(base_url, old)), alerts(base_url, old)
        for index in range(10, 13):
            await field.window(clock, start + index * WINDOW, lambda i: old, drifted, index)
        report = drift_windows(base_url, old)
        assert len(report) == 13
        assert not any(w["alert"] for w in report[:10])
        assert any(w["alert_open"] for w in report[10:13])
        audit = api_get(base_url, "/audit", subject=f"release:{old}")["items"]
        assert [e["action"] for e in audit if e["action"].startswith("telemetry.")] == [
            "telemetry.drift_alert_opened"
        ]

        canary = lambda i: new if i % 2 else old  # noqa: E731
        for index in range(13, 16):
            await field.window(clock, start + index * WINDOW, canary, drifted, index)
        uow = SqlUnitOfWork(
            make_session_factory(make_engine(f"sqlite:///{workdir / 'server' / 'fleet.db'}"))
        )
        held = drift_gate(uow, new, old)
        assert held.verdict is Verdict.HOLD, held
        assert "drift" in {r.code for r in held.reasons}, held

        everyone = lambda i: DRIFT  # noqa: E731
        for index in range(16, 19):
            await field.window(clock, start + index * WINDOW, canary, everyone, index)
        passed = drift_gate(uow, new, old)
        assert passed.verdict is Verdict.PASS, [(r.code, r.histogram) for r in passed.reasons]
        await asyncio.gather(*(d.link.close() for d in devices))
    await hub.aclose()


def test_drift_is_detected_and_gates_a_canary_over_real_mqtt(
    trust: Trust, mosquitto: Broker, tmp_path: Path
) -> None:
    raise_file_limit()
    started = time.perf_counter()
    asyncio.run(scenario(trust, mosquitto, tmp_path))
    print(f"telemetry e2e: {time.perf_counter() - started:.1f} s")
