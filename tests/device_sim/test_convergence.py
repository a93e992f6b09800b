"""Simulated devices on a real Mosquitto converge to the release the director names."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device_sim.flash import Flash
from fleet.transports.embedded_broker import Broker
from schemas import DeviceState
from tests.device_sim.conftest import Sim, eventually
from tests.device_sim.director import states

LIFECYCLE = [
    "idle",
    "notified",
    "downloading",
    "downloaded",
    "verifying",
    "installing",
    "rebooting",
    "healthy",
]


async def test_one_device_converges_and_signs_every_status(sim: Sim) -> None:
    release = sim.director.release("2.0.0", security_version=3)
    sim.publish_release(release)
    device = sim.provision("dev-1")
    sim.server.publish_desired("dev-1", sim.director.delivery("dev-1", release))

    sim.start(device)
    await sim.wait_for_state(device, "healthy")

    reports = sim.statuses(device)  # each one verified with the device's public key
    assert [s for i, s in enumerate(states(reports)) if s not in states(reports)[:i]] == LIFECYCLE
    assert [r.counter for r in reports] == sorted({r.counter for r in reports})
    final = reports[-1]
    assert final.state == DeviceState.HEALTHY
    assert final.running_release_digest == release.digest
    assert {c.kind: c.version for c in final.components} == {
        "firmware": "2.0.0",
        "model": "2.0.0",
        "thresholds": "2.0.0",
    }
    state = device.state()
    assert state.running_digest == release.digest
    assert state.active_slot == "b" and not state.trial and state.pending is None
    assert state.floors == {"firmware": 3, "model": 3, "thresholds": 3}
    assert state.last_sequence == 1
    await eventually(lambda: sim.server.payloads("tf/d/dev-1/online")[-1:] == [b"online"])


async def test_calibration_is_downloaded_into_the_slot(sim: Sim) -> None:
    release = sim.director.release("2.0.0")
    sim.publish_release(release)
    calibration = b'{"gain": 1.02, "offset": -3}'
    sim.artifacts.add(calibration)
    device = sim.provision("dev-1")
    sim.server.publish_desired(
        "dev-1", sim.director.delivery("dev-1", release, calibration=calibration)
    )

    sim.start(device)
    await sim.wait_for_state(device, "healthy")

    state = device.state()
    assert state.running is not None and state.running.calibration_digest is not None
    slot_file = Flash(device.directory).slot_dir(state.active_slot) / "calibration"
    assert slot_file.read_bytes() == calibration
    assert "calibration" in {c.kind for c in sim.statuses(device)[-1].components}


async def test_a_device_dropped_by_the_broker_reconnects_and_takes_new_work(
    sim: Sim, mosquitto: Broker
) -> None:
    r1 = sim.director.release("1.0.0")
    r2 = sim.director.release("2.0.0")
    sim.publish_release(r1)
    sim.publish_release(r2)
    device = sim.provision("dev-1")
    sim.server.publish_desired("dev-1", sim.director.delivery("dev-1", r1))
    sim.start(device)
    await sim.wait_for_state(device, "healthy")
    onlines = len(sim.server.payloads("tf/d/dev-1/online"))

    # Another connection with the same client id takes the session over: the broker drops
    # the device's connection, and the device must come back on its own.
    intruder = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="dev-1", protocol=MQTTProtocolVersion.MQTTv5
    )
    intruder.username_pw_set("dev-1")
    intruder.connect(mosquitto.host, mosquitto.port)
    intruder.loop(timeout=0.2)
    intruder.disconnect()
    await eventually(lambda: len(sim.server.payloads("tf/d/dev-1/online")) > onlines + 1)

    sim.server.publish_desired("dev-1", sim.director.delivery("dev-1", r2))
    await eventually(lambda: device.state().running_digest == r2.digest)
    assert DeviceState.REFUSED not in {r.state for r in sim.statuses(device)}
