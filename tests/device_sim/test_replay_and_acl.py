"""Attacks through the broker: a replayed Delivery, and a device speaking for another."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from device_sim.state import PersistentState
from fleet.transports.embedded_broker import Broker
from schemas import DeviceState
from tests.device_sim.conftest import Sim, eventually
from tests.device_sim.director import ServerClient


def _raw_device(broker: Broker, device_id: str, **callbacks: object) -> mqtt.Client:
    """A bare MQTT 5 client logged in as ``device_id``, connected, on its own thread."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=device_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.username_pw_set(device_id)
    for name, callback in callbacks.items():
        setattr(client, name, callback)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert connected.wait(5)
    return client


def await_sync(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _trust_and_slots(state: PersistentState) -> dict[str, object]:
    """Everything but the status counter, which every report raises."""
    return state.model_dump(exclude={"counter"})


async def test_replayed_older_delivery_is_refused_and_changes_nothing(sim: Sim) -> None:
    r1 = sim.director.release("1.0.0", security_version=1)
    r2 = sim.director.release("2.0.0", security_version=2)
    sim.publish_release(r1)
    sim.publish_release(r2)
    device = sim.provision("dev-1")
    old_delivery = sim.director.delivery("dev-1", r1)  # sequence 1
    sim.server.publish_desired("dev-1", old_delivery)
    sim.start(device)
    await sim.wait_for_state(device, "healthy")
    sim.server.publish_desired("dev-1", sim.director.delivery("dev-1", r2))  # sequence 2
    await eventually(lambda: device.state().running_digest == r2.digest)
    await eventually(lambda: sim.statuses(device)[-1].state == DeviceState.HEALTHY)
    before = device.state()

    sim.server.publish_desired("dev-1", old_delivery)  # an attacker's replay
    await sim.wait_for_state(device, "refused")

    refused = sim.statuses(device)[-1]
    assert refused.state == DeviceState.REFUSED
    assert refused.error_code == "sequence_replayed"
    assert refused.running_release_digest == r2.digest
    after = device.state()
    assert _trust_and_slots(after) == _trust_and_slots(before)
    assert after.counter == before.counter + 1


async def test_retained_delivery_seen_again_after_a_restart_is_not_a_replay(sim: Sim) -> None:
    release = sim.director.release("2.0.0")
    sim.publish_release(release)
    device = sim.provision("dev-1")
    sim.server.publish_desired("dev-1", sim.director.delivery("dev-1", release))
    sim.start(device)
    await sim.wait_for_state(device, "healthy")
    await sim.stop(device)
    count = len(sim.statuses(device))

    sim.start(device)
    await eventually(lambda: len(sim.statuses(device)) > count)
    await eventually(lambda: sim.server.payloads("tf/d/dev-1/online")[-1:] == [b"online"])

    again = sim.statuses(device)[count:]
    assert [r.state for r in again] == [DeviceState.HEALTHY], "it reports where it is, once"
    assert again[0].running_release_digest == release.digest


def test_a_device_cannot_publish_on_another_devices_status(
    mosquitto: Broker, server: ServerClient
) -> None:
    acks: dict[int, ReasonCode] = {}
    acked = threading.Condition()

    def on_publish(_c: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        with acked:
            acks[mid] = reason
            acked.notify_all()

    def publish(topic: str, payload: bytes) -> ReasonCode:
        mid = dev1.publish(topic, payload, qos=1).mid
        with acked:
            assert acked.wait_for(lambda: mid in acks, timeout=5)
        return acks[mid]

    disconnects: list[ReasonCode] = []
    dev1 = _raw_device(
        mosquitto, "dev-1", on_publish=on_publish,
        on_disconnect=lambda _c, _u, _f, reason, _p: disconnects.append(reason),
    )  # fmt: skip
    try:
        spoofed = publish("tf/d/dev-2/status", b"spoofed")
        time.sleep(0.2)  # room for the broker to (wrongly) drop the connection
        assert disconnects == [], "a denied publish is answered, not punished"
        own = publish("tf/d/dev-1/status", b"own")
    finally:
        dev1.disconnect()
        dev1.loop_stop()

    assert spoofed.value == 0x87, "MQTT 5 answers a denied publish with Not authorized"
    assert not own.is_failure
    # The spoofed publish was handled before the allowed one was sent: once the allowed one
    # has arrived, a delivered spoofed one would have too.
    await_sync(lambda: server.payloads("tf/d/dev-1/status") == [b"own"])
    assert server.payloads("tf/d/dev-2/status") == []


def test_a_device_cannot_read_another_devices_desired_state(
    mosquitto: Broker, server: ServerClient
) -> None:
    server.publish_desired("dev-2", b"secret for dev-2")
    server.publish_desired("dev-1", b"for dev-1")
    received: list[str] = []
    dev1 = _raw_device(
        mosquitto, "dev-1", on_message=lambda _c, _u, message: received.append(message.topic)
    )
    try:
        # Denied subscriptions are still granted in the SUBACK; only delivery is filtered.
        dev1.subscribe([("tf/d/dev-2/desired", 1), ("tf/d/dev-1/desired", 1)])
        await_sync(lambda: "tf/d/dev-1/desired" in received)
        time.sleep(0.2)  # room for a (wrongly) delivered dev-2 retained message
    finally:
        dev1.disconnect()
        dev1.loop_stop()
    assert received == ["tf/d/dev-1/desired"]
