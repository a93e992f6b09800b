"""A device's message budget on MQTT (a real Mosquitto) and CoAP (real UDP): a flooding
device's excess is dropped and counted, the other devices lose nothing, and the flooder's
own messages pass again once its window has slid by."""

from __future__ import annotations

import asyncio
import queue
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from aiocoap import Context, Message
from aiocoap.numbers.codes import Code
from paho.mqtt.enums import CallbackAPIVersion

from device_sim.coap_keys import client_context
from fleet.observability import Metrics
from fleet.ratelimit import DeviceBudget, RateLimiter, parse_rate
from fleet.services.ports import BlobStore
from fleet.transports.coap import CoapPorts, build_public_site, build_site
from fleet.transports.coap_oscore import DeviceContexts, GatedSite
from fleet.transports.coap_server import free_udp_port
from fleet.transports.embedded_broker import Broker
from fleet.transports.mqtt import MqttEndpoint
from fleet.transports.mqtt_fleet import DeviceMessage, MqttFleetTransport
from schemas.oscore import OscoreKeys

BUDGET = 5  # per second, so a test waits a second, not a minute, for the window to slide


def dropped(metrics: Metrics, kind: str) -> float:
    value = metrics.registry.get_sample_value(
        "fleet_device_messages_dropped_total", {"kind": kind, "reason": "over_budget"}
    )
    return value or 0.0


def drain(inbox: queue.Queue[DeviceMessage], expected: int, timeout: float = 10) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        try:
            got.append(inbox.get(timeout=0.1).device_id)
        except queue.Empty:
            continue
    time.sleep(0.3)  # anything beyond what was expected would have arrived by now
    while not inbox.empty():
        got.append(inbox.get_nowait().device_id)
    return got


def device_client(broker: Broker, device_id: str) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv5)
    client.username_pw_set(device_id)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def test_mqtt_drops_a_flooding_devices_excess_and_nobody_elses(mosquitto: Broker) -> None:
    metrics = Metrics()
    budget = DeviceBudget(RateLimiter(), parse_rate(f"{BUDGET}/second"), metrics)
    inbox: queue.Queue[DeviceMessage] = queue.Queue()
    transport = MqttFleetTransport(
        MqttEndpoint.parse(mosquitto.server_url()),
        inbox,
        client_id="fleet-budget-test",
        share_group="budget",
        clock=lambda: datetime.now(UTC),
        budget=budget,
    )
    transport.start()
    flooder, neighbour = device_client(mosquitto, "dev-flood"), device_client(mosquitto, "dev-ok")
    try:
        for _ in range(50):
            flooder.publish("tf/d/dev-flood/status", b"{}", qos=1).wait_for_publish(5)
        for _ in range(BUDGET):
            neighbour.publish("tf/d/dev-ok/status", b"{}", qos=1).wait_for_publish(5)
        got = drain(inbox, 2 * BUDGET)
        assert got.count("dev-ok") == BUDGET  # the neighbour lost nothing
        flooded = got.count("dev-flood")
        assert BUDGET <= flooded < 2 * BUDGET  # the window may slide once during the flood
        assert dropped(metrics, "status") == 50 - flooded

        time.sleep(1.1)  # the flooder slows down: its later messages pass again
        flooder.publish("tf/d/dev-flood/status", b"{}", qos=1).wait_for_publish(5)
        assert drain(inbox, 1) == ["dev-flood"]
    finally:
        for client in (flooder, neighbour):
            client.loop_stop()
            client.disconnect()
        transport.stop()


@pytest.fixture
def queued() -> list[str]:
    return []


class _MemoryLeases:
    def __init__(self) -> None:
        self._next = 0

    def reserve(self, count: int) -> range:
        self._next += count
        return range(self._next - count, self._next)


async def test_coap_answers_4_29_with_max_age_past_the_budget(
    tmp_path: Path, queued: list[str]
) -> None:
    metrics = Metrics()
    budget = DeviceBudget(RateLimiter(), parse_rate(f"{BUDGET}/second"), metrics)
    ports = CoapPorts(
        delivery=lambda device_id: None,
        status=lambda device_id, body: queued.append(device_id),
        telemetry=lambda device_id, body: queued.append(device_id),
        blobs=BlobStore(tmp_path),
        budget=budget,
    )
    keys = {
        device: OscoreKeys(master_secret=secrets.token_hex(32), device_kid=f"0{number}")
        for number, device in enumerate(("dev-flood", "dev-ok"), start=1)
    }
    by_kid = {k.device_kid: (device, k) for device, k in keys.items()}
    protected, _ = build_site(ports, metrics)
    site = GatedSite(
        protected,
        build_public_site(ports, metrics),
        DeviceContexts(by_kid.get, lambda _device: _MemoryLeases()),
    )
    port = free_udp_port()
    server = await Context.create_server_context(
        site, bind=("127.0.0.1", port), transports=["udp6"]
    )
    base = f"coap://127.0.0.1:{port}"
    clients = {
        device: await client_context(
            base, keys[device], device_id=device, state_dir=tmp_path / device, fsync=False
        )
        for device in ("dev-flood", "dev-ok")
    }
    try:

        async def post(device_id: str) -> Message:
            request = Message(
                code=Code.POST, uri=f"{base}/s/{device_id}", payload=b"{}", content_format=50
            )
            response: Message = await clients[device_id].request(request).response
            return response

        answers = [await post("dev-flood") for _ in range(3 * BUDGET)]
        codes = [a.code for a in answers]
        assert codes[:BUDGET] == [Code.CHANGED] * BUDGET
        refused = [a for a in answers if a.code == Code.TOO_MANY_REQUESTS]
        assert len(refused) >= BUDGET
        assert all(1 <= a.opt.max_age <= 1 for a in refused)
        neighbour = [await post("dev-ok") for _ in range(BUDGET)]
        assert [a.code for a in neighbour] == [Code.CHANGED] * BUDGET
        assert dropped(metrics, "status") == len(refused)
        assert queued.count("dev-flood") == len(answers) - len(refused)

        await asyncio.sleep(1.1)
        assert (await post("dev-flood")).code == Code.CHANGED
    finally:
        for client in clients.values():
            await client.shutdown()
        await server.shutdown()
