"""Field drift end to end: real Mosquitto, a real server, 500 devices running the int8 model.

Each simulated device is ``device_sim``'s update logic (``tests/e2e/telemetry_field.py``):
it installs the releases the server directs it to (signed manifests over MQTT, artifacts
over HTTP, verified, A/B slots, signed status). Per telemetry window it reads 4 sensor
windows (``fleet.toolkit.sensors``, the gesture task), runs the packaged int8 model on
them with LiteRT, histograms the input summaries, confidence and predicted class over the
thresholds' bins, caps to C = 1, adds discrete Laplace noise (local eps = 4), signs the
report — naming the release it runs and its model version — with its own key and
publishes it over its own MQTT connection. Windows are 60 s of the server's clock, which
the test moves forward, so a window takes a few seconds of real time.

1. The 500 devices left the factory with release A (1.0.0) in slot a and report it in
   their signed status when they start (installing it on all of them would add ~30 s).
   No alert over 10 clean windows; then a 30 % gain drift on half of them opens an alert
   within 3 windows (API drift report and audit log).
2. A rollout of release B (1.1.0) through the admin API, run by the server's rollout
   engine with its drift gate (``telemetry_drift_gate``): 20 % canary, then 100 %, policy
   ``pause``. B's firmware mis-scales the sensor: a device that runs B sees a 30 % gain
   drift, one on A does not. The canary installs B and reports; the engine holds the
   rollout at its canary wave (paused, ``gate_failed`` by the drift gate), and no device
   outside the canary is ever told to install B. The operator rolls it back.
3. A rollout of release C (1.2.0), whose firmware is fine, while the world shifts for
   every device (the same 30 % gain drift on A and C alike): the engine passes the drift
   gate (a shared shift) and starts the 100 % wave.

The canary reports healthy before any of its telemetry windows closes: until then the
drift gate has nothing to judge and *waits* — the rollout stays running at its canary
wave, neither paused nor advanced (``judge_after_soak`` checks it). No background worker
of the server fails along the way (``fleet_worker_failures_total``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from device_sim.inference import Backend, OnDeviceModel
from device_sim.mqtt_link import MqttHub
from device_sim.state import Slot
from device_sim.telemetry import TelemetryRecorder, window_start
from fleet.client import AdminClient
from fleet.domain.drift import Verdict
from fleet.domain.rollout_plan import cohort_order
from fleet.local_setup import Trust
from fleet.services.drift import drift_gate
from fleet.store import SqlUnitOfWork, make_engine
from fleet.store.db import make_session_factory
from fleet.toolkit.packaged import packaged_model, packaged_reference, packaged_thresholds
from fleet.toolkit.sensors import FieldConditions
from fleet.transports.embedded_broker import Broker
from schemas import ComponentVersion, ReleaseManifest, decode_payload
from schemas.components import Thresholds
from schemas.device import Mechanism
from schemas.privacy import simulated_discrete_laplace
from signer.acceptance import payload_digest
from signer.fileio import read_envelope
from signer.keys import SigningKey
from tests.e2e.fleet_run import DEVICE_CLASS, raise_file_limit
from tests.e2e.telemetry_field import (
    FieldDevice,
    FieldFleet,
    VirtualClock,
    api,
    metric,
    running_server,
    until,
)
from tests.e2e.test_mqtt_delivery import register_signed_release

pytestmark = pytest.mark.slow
DEVICES = 500
INFERENCES = 4
WINDOW = timedelta(seconds=60)
GRACE = timedelta(seconds=5)
MIN_REPORTERS = 50  # the server's default k
ADMIN = "tf_" + secrets.token_urlsafe(32)
DRIFT = FieldConditions(gain_drift=1.3)
CLEAN = FieldConditions()
CANARY_PERCENT = 20  # 100 devices: k = 50 and enough to see the drift in 3 windows
CANARY = DEVICES * CANARY_PERCENT // 100
SOAK = timedelta(minutes=10)  # of the server's clock: longer than the 3 windows judged


def recorders(model: OnDeviceModel, count: int) -> list[TelemetryRecorder]:
    return [
        # Seeded simulation of the devices' OpenDP noise (the same distribution,
        # schemas.privacy): the test is reproducible; OpenDP itself is tested in
        # tests/telemetry.
        TelemetryRecorder(
            model,
            rng=np.random.default_rng(i),
            noise=simulated_discrete_laplace(np.random.default_rng(100_000 + i)),
        )
        for i in range(count)
    ]


def device_model() -> OnDeviceModel:
    thresholds = Thresholds.model_validate_json(packaged_thresholds()).model_copy(
        update={
            "privacy": Mechanism(name="discrete_laplace", epsilon=4.0, cap=1),
            "window_seconds": int(WINDOW.total_seconds()),
        }
    )
    return OnDeviceModel(packaged_model(), thresholds, backend=Backend.LITERT)


def plan() -> dict[str, Any]:
    gates = {"max_failure_rate": 0.1, "max_rollback_rate": 0.1, "min_reports": 5}
    waves = [
        {"percent": p, "soak_seconds": SOAK.total_seconds(), "gates": gates}
        for p in (CANARY_PERCENT, 100)
    ]
    return {"on_failure": "pause", "waves": waves}


class Windows:
    """Telemetry windows on the server's clock: every device reports, then the window
    closes and the server releases one aggregate per release the devices ran."""

    def __init__(
        self, field: FieldFleet, clock: VirtualClock, base_url: str, *, releases: list[str]
    ) -> None:
        self.field = field
        self.clock = clock
        self.base_url = base_url
        self.releases = releases  # whose released aggregates to count
        self.index = 0
        self.released = 0
        self.seconds = {"devices": 0.0, "ingest": 0.0, "release": 0.0}  # real time spent

    async def run(self, count: int, conditions: Callable[[FieldDevice], FieldConditions]) -> None:
        for _ in range(count):
            start = window_start(self.clock(), int(WINDOW.total_seconds())) + WINDOW
            self.clock.set(start + timedelta(seconds=1))
            began = time.perf_counter()
            reported = await self.field.window(
                start=start, index=self.index, conditions=conditions, inferences=INFERENCES
            )
            assert min(reported.values()) >= MIN_REPORTERS, reported
            sent = time.perf_counter()
            assert await until(self.ingested, timeout=60, interval=0.05), "not ingested"
            self.clock.set(start + WINDOW + GRACE + timedelta(seconds=1))
            self.released += len(reported)
            ingested = time.perf_counter()
            assert await until(self.closed, timeout=60, interval=0.05), "window not released"
            self.index += 1
            self.seconds["devices"] += sent - began
            self.seconds["ingest"] += ingested - sent
            self.seconds["release"] += time.perf_counter() - ingested

    def summary(self) -> str:
        spent = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return f"{self.index} windows: {spent}"

    def ingested(self) -> bool:
        return metric(self.base_url, "fleet_telemetry_ingested_total") >= self.field.sent

    def closed(self) -> bool:
        return self.released_windows() >= self.released

    def released_windows(self) -> int:
        return sum(
            len(api(self.base_url, ADMIN, "/telemetry/aggregates", release=d, limit=1000)["items"])
            for d in self.releases
        )


def factory_image(directory: Path, digest: str) -> Slot:
    """Slot a of a device that left the factory with the release signed into
    ``directory`` (``register_signed_release``)."""
    envelope = read_envelope(directory / "release.json", what="release")
    assert payload_digest(envelope) == digest
    manifest = decode_payload(envelope, ReleaseManifest)
    components = tuple(
        ComponentVersion(kind=c.kind.value, version=c.version, security_version=c.security_version)
        for c in manifest.components
    )
    return Slot(release_digest=digest, release=envelope, components=components)


def server_sees_all_on(client: AdminClient, digest: str) -> bool:
    """The server's record of every device: it runs ``digest``, nothing under way."""
    return Counter((d["running_release"], d["state"]) for d in client.devices()) in (
        Counter({(digest, "idle"): DEVICES - n, (digest, "healthy"): n}) for n in (0, CANARY)
    )


def drift_windows(base_url: str, digest: str) -> list[dict[str, Any]]:
    windows: list[dict[str, Any]] = api(
        base_url, ADMIN, "/telemetry/drift", release=digest, history=48
    )["windows"]
    return windows


def alerts(base_url: str, digest: str) -> list[tuple[int, str, float]]:
    """The streams of windows that alerted, for a failure message."""
    return [
        (index, s["histogram"], s["p_value"])
        for index, w in enumerate(drift_windows(base_url, digest))
        if w["alert"]
        for s in w["streams"]
        if s["p_value"] < 0.01
    ]


def gate_failures(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in body["events"] if e["kind"] == "gate_failed"]


def worker_failures(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fleet_worker_failures_total{")
    )


async def start_canary(
    client: AdminClient, field: FieldFleet, clock: VirtualClock, release: str, name: str
) -> str:
    """Create and approve a rollout of ``release``; wait until its canary runs it. Then,
    past the soak on the server's clock and before any telemetry of the release exists,
    the drift gate has nothing to judge: the rollout waits at its canary wave — running,
    no gate failed, nobody else directed — for several engine ticks (every 0.5 s)."""
    ids = [d.device_id for d in field.devices]
    created = client.create_rollout(release, plan(), device_class=DEVICE_CLASS, rollout_id=name)
    assert created["population"] == DEVICES
    began = time.perf_counter()
    client.act_on_rollout(name, "approve")
    cut = client.rollout(name)["progress"][0]["cut"]
    assert cut == CANARY
    canary = set(cohort_order(name, ids)[:cut])

    def installed() -> bool:
        on = {d.device_id for d in field.healthy_on(release)}
        return on == canary and client.rollout(name)["progress"][0]["states"] == {"healthy": cut}

    assert await until(installed, timeout=90, interval=0.3), (field.running(), client.rollout(name))
    print(f"{name}: canary of {cut} installed in {time.perf_counter() - began:.1f} s")
    clock.set(clock() + SOAK + timedelta(seconds=1))
    for _ in range(8):
        body = client.rollout(name)
        assert (body["status"], body["wave"], gate_failures(body)) == ("running", 0, []), body
        assert [w["directed"] for w in body["progress"]] == [CANARY, 0]
        await asyncio.sleep(0.25)
    return name


async def judge_after_soak(
    client: AdminClient, clock: VirtualClock, rollout_id: str, done: Callable[[Any], bool]
) -> dict[str, Any]:
    """Let the canary's wave soak (on the server's clock) and the engine judge it with the
    telemetry the canary sent; wait until ``done(rollout)``.

    """
    began = time.perf_counter()
    clock.set(clock() + SOAK + timedelta(seconds=1))
    assert await until(lambda: done(client.rollout(rollout_id)), timeout=120, interval=0.3), (
        client.rollout(rollout_id)
    )
    print(f"{rollout_id}: judged {time.perf_counter() - began:.1f} s after the soak")
    judged: dict[str, Any] = client.rollout(rollout_id)
    return judged


async def clean_then_drift(windows: Windows, base_url: str, a: str) -> None:
    """Release A everywhere: no alert over 10 clean windows; a gain drift on half of the
    devices opens one within 3."""
    started = time.perf_counter()
    await windows.run(10, lambda d: CLEAN)
    assert not any(w["alert"] for w in drift_windows(base_url, a)), alerts(base_url, a)
    await windows.run(3, lambda d: DRIFT if d.index % 2 else CLEAN)
    report = drift_windows(base_url, a)
    assert len(report) == 13
    assert not any(w["alert"] for w in report[:10])
    assert any(w["alert_open"] for w in report[10:13])
    audit = api(base_url, ADMIN, "/audit", subject=f"release:{a}")["items"]
    assert [e["action"] for e in audit if e["action"].startswith("telemetry.")] == [
        "telemetry.drift_alert_opened"
    ]
    print(f"13 windows, alert opened: {time.perf_counter() - started:.1f} s")


async def drifting_release_is_held(
    client: AdminClient, field: FieldFleet, windows: Windows, a: str, b: str
) -> None:
    """Release B mis-scales the sensor: its canary drifts alone; the engine holds the
    rollout at the canary wave. The operator rolls it back to A."""
    started = time.perf_counter()
    held = await start_canary(client, field, windows.clock, b, "drifting-b")
    canary = set(cohort_order(held, [d.device_id for d in field.devices])[:CANARY])
    await windows.run(3, lambda d: DRIFT if d.running == b else CLEAN)
    detail = await judge_after_soak(
        client, windows.clock, held, lambda r: bool(gate_failures(r)) or r["wave"] >= 1
    )
    assert detail["status"] == "paused", detail
    assert detail["wave"] == 0
    failed = gate_failures(detail)
    assert len(failed) == 1, failed
    assert failed[0]["wave"] == 0
    assert failed[0]["detail"]["gate"] == "drift"
    assert failed[0]["detail"]["reason"].startswith("drift: "), failed
    assert [w["directed"] for w in detail["progress"]] == [CANARY, 0]
    assert {d.device_id for d in field.devices if b in d.told} == canary
    print(f"B held at its canary: {failed[0]['detail']['reason'][:60]}…")

    client.act_on_rollout(held, "rollback")
    back = lambda: client.rollout(held)["rollback"] == {"directed": CANARY}  # noqa: E731
    assert await until(back, timeout=30), client.rollout(held)
    assert await until(lambda: field.all_on(a), timeout=60), field.running()
    assert await until(lambda: server_sees_all_on(client, a), timeout=30)
    assert {d.device_id for d in field.devices if b in d.told} == canary
    print(f"B held and rolled back: {time.perf_counter() - started:.1f} s")


async def shared_shift_passes(
    client: AdminClient, field: FieldFleet, windows: Windows, c: str
) -> None:
    """Release C is fine and the world shifts for every device alike: the engine passes
    the canary wave and directs the rest."""
    started = time.perf_counter()
    passing = await start_canary(client, field, windows.clock, c, "shared-shift-c")
    await windows.run(3, lambda d: DRIFT)
    detail = await judge_after_soak(client, windows.clock, passing, lambda r: r["wave"] >= 1)
    assert detail["status"] in {"running", "completed"}, detail
    assert detail["wave"] >= 1
    assert not gate_failures(detail), gate_failures(detail)
    assert [w["directed"] for w in detail["progress"]] == [CANARY, DEVICES - CANARY]
    print(f"C passed its canary under a shared shift: {time.perf_counter() - started:.1f} s")


async def scenario(trust: Trust, broker: Broker, workdir: Path) -> None:
    clock = VirtualClock()
    hub = MqttHub()
    with running_server(trust, workdir / "server", broker, clock, admin=ADMIN,
                        grace=int(GRACE.total_seconds())) as base_url, AdminClient(
        base_url, ADMIN
    ) as client:  # fmt: skip
        client.create_device_class(DEVICE_CLASS, ram_bytes=1 << 20, flash_bytes=1 << 22)
        a = register_signed_release(client, trust, workdir / "a", "1.0.0")
        b = register_signed_release(client, trust, workdir / "b", "1.1.0")
        c = register_signed_release(client, trust, workdir / "c", "1.2.0")
        sha = hashlib.sha256(packaged_model()).hexdigest()
        client.register_model_reference(sha, packaged_reference())
        keys = [SigningKey.generate() for _ in range(DEVICES)]
        body = [{"id": f"tel-{i:04d}", "device_class": DEVICE_CLASS, "public_key": k.public.public}
                for i, k in enumerate(keys)]  # fmt: skip
        client.enroll(json.dumps(body).encode())
        # The devices left the factory with release A in slot a; each reports it (signed
        # status) when it starts, so the server knows what every device runs.
        started = time.perf_counter()
        field = await FieldFleet.connect(
            keys=keys, recorders=recorders(device_model(), DEVICES), hub=hub, broker=broker,
            base_url=base_url, trust=trust, state_dir=workdir / "devices",
            device_class=DEVICE_CLASS, clock=clock, factory=factory_image(workdir / "a", a),
        )  # fmt: skip
        windows = Windows(field, clock, base_url, releases=[a, b, c])
        try:
            assert [d.device_id for d in field.devices] == [e["id"] for e in body]
            assert await until(lambda: field.all_on(a), timeout=60), field.running()
            assert await until(lambda: server_sees_all_on(client, a), timeout=30)
            print(f"{DEVICES} devices up on 1.0.0 in {time.perf_counter() - started:.1f} s")
            await clean_then_drift(windows, base_url, a)
            await drifting_release_is_held(client, field, windows, a, b)
            await shared_shift_passes(client, field, windows, c)
            print(windows.summary())
            assert worker_failures(base_url) == 0
        finally:
            await field.close()  # wave 1's installs would only slow the check below
        # The gate judged C's and A's telemetry and saw the shift in both cohorts.
        uow = SqlUnitOfWork(
            make_session_factory(make_engine(f"sqlite:///{workdir / 'server' / 'fleet.db'}"))
        )
        verdict = drift_gate(uow, c, a)
        assert verdict.verdict is Verdict.PASS, [(r.code, r.histogram) for r in verdict.reasons]
        assert "shared_shift" in {r.code for r in verdict.reasons}, verdict
    await hub.aclose()


def test_drift_is_detected_and_the_rollout_engine_holds_a_drifting_canary_over_real_mqtt(
    trust: Trust, mosquitto: Broker, tmp_path: Path
) -> None:
    raise_file_limit()
    started = time.perf_counter()
    asyncio.run(scenario(trust, mosquitto, tmp_path))
    print(f"telemetry e2e: {time.perf_counter() - started:.1f} s")
