"""The CoAP server against a real aiocoap client and raw UDP: answers, errors, counters.

Every bad request gets a 4.xx and is counted in ``fleet_coap_errors_total``; datagrams
that are not CoAP are counted in ``fleet_coap_malformed_total``; after all of it the
server still serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest
from aiocoap import Context, oscore
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat
from paho.mqtt.enums import CallbackAPIVersion

from device_sim.coap_keys import client_context
from device_sim.telemetry import window_start
from device_sim.wire import desired_topic
from schemas import Delivery, DeviceState, Mechanism, StatusReport, TelemetryReport
from schemas.device import TelemetryWindow
from schemas.oscore import OscoreKeys
from signer.keys import SigningKey
from signer.signing import sign_model
from tests.coap.conftest import DEVICE_ID, CoapWorld


@pytest.fixture
async def client(coap_world: CoapWorld, tmp_path: Path) -> AsyncIterator[Context]:
    """The enrolled device's client: its requests are protected with fresh OSCORE keys."""
    keys = OscoreKeys.model_validate(coap_world.client.new_coap_keys(DEVICE_ID))
    context = await client_context(
        _uri(coap_world, ""), keys, device_id=DEVICE_ID, state_dir=tmp_path, fsync=False
    )
    yield context
    await context.shutdown()


@pytest.fixture
async def plain() -> AsyncIterator[Context]:
    """A client without keys: what anyone on the network can send."""
    context = await Context.create_client_context(transports=["udp6"])
    yield context
    await context.shutdown()


def _uri(world: CoapWorld, path: str) -> str:
    host, port = world.host_port
    return f"coap://{host}:{port}{path}"


async def _ask(client: Context, request: Message) -> Message:
    response: Message = await client.request(request, handle_blockwise=False).response
    return response


def _metric(world: CoapWorld, name: str) -> float:
    text = httpx.get(f"{world.local.base_url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _errors(world: CoapWorld, resource: str, code: str) -> float:
    return _metric(world, f'fleet_coap_errors_total{{code="{code}",resource="{resource}"}}')


def _telemetry(device_id: str, counter: int, key: SigningKey) -> bytes:
    report = TelemetryReport(
        device_id=device_id,
        counter=counter,
        window=TelemetryWindow(start=window_start(datetime.now(UTC), 3600), seconds=3600),
        release_digest="0" * 64,
        model_version="1.0.0",
        mechanism=Mechanism(name="none", epsilon=1.0, cap=1),
        histograms={f"feature_{i}": tuple(range(14)) for i in range(16)},
    )
    return sign_model(report, [key]).to_bytes()


async def test_any_block_of_an_artifact_can_be_fetched_on_its_own(
    coap_world: CoapWorld, plain: Context
) -> None:
    uri = _uri(coap_world, f"/a/{coap_world.artifact_sha256}")
    for number, szx in [(700, 6), (3, 4), (0, 0)]:
        size = 1 << (szx + 4)
        response = await _ask(plain, Message(code=Code.GET, uri=uri, block2=(number, False, szx)))
        assert response.code == Code.CONTENT
        assert response.opt.content_format == ContentFormat.OCTETSTREAM
        assert response.opt.block2.block_number == number and response.opt.block2.more
        assert response.payload == coap_world.artifact[number * size : (number + 1) * size]
        assert response.opt.size2 == len(coap_world.artifact)


async def test_the_last_block_says_no_more_and_the_next_is_refused(
    coap_world: CoapWorld, plain: Context
) -> None:
    uri = _uri(coap_world, f"/a/{coap_world.artifact_sha256}")
    last = len(coap_world.artifact) // 1024
    response = await _ask(plain, Message(code=Code.GET, uri=uri, block2=(last, False, 6)))
    assert not response.opt.block2.more
    assert response.payload == coap_world.artifact[last * 1024 :]
    before = _errors(coap_world, "a", "4.02")
    past = await _ask(plain, Message(code=Code.GET, uri=uri, block2=(last + 1, False, 6)))
    assert past.code == Code.BAD_OPTION
    assert _errors(coap_world, "a", "4.02") == before + 1


async def test_unknown_paths_artifacts_devices_and_methods_are_refused_and_counted(
    coap_world: CoapWorld, client: Context, plain: Context
) -> None:
    cases = [
        (plain, Code.GET, "/nothing/here", Code.NOT_FOUND, "other"),
        (plain, Code.GET, "/a/" + "0" * 64, Code.NOT_FOUND, "a"),
        (plain, Code.GET, "/a/not-a-digest", Code.NOT_FOUND, "a"),
        (plain, Code.POST, f"/a/{coap_world.artifact_sha256}", Code.METHOD_NOT_ALLOWED, "a"),
        (client, Code.GET, "/m/a/b", Code.NOT_FOUND, "m"),
        (client, Code.DELETE, f"/m/{DEVICE_ID}", Code.METHOD_NOT_ALLOWED, "m"),
    ]
    for sender, method, path, expected, resource in cases:
        before = _errors(coap_world, resource, expected.dotted)
        response = await _ask(sender, Message(code=method, uri=_uri(coap_world, path)))
        assert response.code == expected, path
        assert _errors(coap_world, resource, expected.dotted) == before + 1, path


async def test_without_keys_every_device_resource_is_4_01_whether_the_id_exists_or_not(
    coap_world: CoapWorld, plain: Context
) -> None:
    answers = []
    for method, path in [
        (Code.GET, f"/m/{DEVICE_ID}"),
        (Code.GET, "/m/no-such-device"),
        (Code.POST, f"/s/{DEVICE_ID}"),
        (Code.POST, "/s/no-such-device"),
        (Code.POST, f"/t/{DEVICE_ID}"),
        (Code.POST, "/t/no-such-device"),
    ]:
        response = await _ask(
            plain, Message(code=method, uri=_uri(coap_world, path), payload=b"{}")
        )
        answers.append((response.code, bytes(response.payload)))

    assert set(answers) == {(Code.UNAUTHORIZED, b"OSCORE required")}


async def test_keys_open_their_own_device_only_and_new_keys_retire_the_old(
    coap_world: CoapWorld, client: Context, tmp_path: Path
) -> None:
    own = await _ask(client, Message(code=Code.GET, uri=_uri(coap_world, f"/m/{DEVICE_ID}")))
    other = await _ask(client, Message(code=Code.GET, uri=_uri(coap_world, "/m/no-such-device")))
    assert own.code == Code.CONTENT
    assert other.code == Code.FORBIDDEN

    coap_world.client.new_coap_keys(DEVICE_ID)  # the keys the client holds are now old
    issued = time.monotonic()
    while True:  # a replica asks the database again after 5 s (DeviceContexts.ttl)
        try:
            await _ask(client, Message(code=Code.GET, uri=_uri(coap_world, f"/m/{DEVICE_ID}")))
        except oscore.NotAProtectedMessage as refused:
            assert refused.plain_message.code == Code.UNAUTHORIZED
            break
        assert time.monotonic() - issued < 10, "the old keys still open /m"
        await asyncio.sleep(0.2)


async def test_keys_of_a_kid_the_server_never_issued_get_4_01(
    coap_world: CoapWorld, tmp_path: Path
) -> None:
    made_up = OscoreKeys(master_secret="11" * 32, device_kid="0102030405")
    stranger = await client_context(
        _uri(coap_world, ""), made_up, device_id=DEVICE_ID, state_dir=tmp_path, fsync=False
    )
    try:
        with pytest.raises(oscore.NotAProtectedMessage) as refused:
            await _ask(stranger, Message(code=Code.GET, uri=_uri(coap_world, f"/m/{DEVICE_ID}")))
    finally:
        await stranger.shutdown()
    assert refused.value.plain_message.code == Code.UNAUTHORIZED


async def test_huge_block1_uploads_are_refused_with_413_and_size1(
    coap_world: CoapWorld, client: Context
) -> None:
    uri = _uri(coap_world, f"/t/{DEVICE_ID}")
    before = _errors(coap_world, "t", "4.13")
    announced = await _ask(
        client,
        Message(code=Code.POST, uri=uri, payload=b"x" * 1024, block1=(0, True, 6), size1=1 << 30),
    )
    assert announced.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert announced.opt.size1 == 16_384
    number, response = 0, None
    while number < 64:
        response = await _ask(
            client,
            Message(code=Code.POST, uri=uri, payload=b"x" * 1024, block1=(number, True, 6)),
        )
        if response.code != Code.CONTINUE:
            break
        number += 1
    assert response is not None and response.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert number == 16  # 16 KiB were taken, the 17th block was one too many
    assert _errors(coap_world, "t", "4.13") == before + 2
    orphan = await _ask(
        client, Message(code=Code.POST, uri=uri, payload=b"x" * 64, block1=(5, False, 6))
    )
    assert orphan.code == Code.REQUEST_ENTITY_INCOMPLETE


async def test_telemetry_is_checked_against_the_enrolled_key_before_it_is_queued(
    coap_world: CoapWorld, client: Context
) -> None:
    uri = _uri(coap_world, f"/t/{DEVICE_ID}")
    good = _telemetry(DEVICE_ID, 1, coap_world.device_key)
    forged = _telemetry(DEVICE_ID, 2, SigningKey.generate())
    misaddressed = _telemetry("someone-else", 3, coap_world.device_key)

    async def post(body: bytes, fmt: int = ContentFormat.JSON) -> Code:
        message = Message(code=Code.POST, uri=uri, payload=body, content_format=fmt)
        response: Message = await client.request(message).response
        return response.code

    accepted = _metric(coap_world, "fleet_coap_telemetry_accepted_total")
    ingested = _metric(coap_world, "fleet_telemetry_ingested_total")
    assert len(good) > 1024  # so aiocoap sends it with Block1
    assert await post(good) == Code.CHANGED
    assert _metric(coap_world, "fleet_coap_telemetry_accepted_total") == accepted + 1
    # queued into the same ingestion as MQTT's: verified again, added to its window
    deadline = time.monotonic() + 10
    while _metric(coap_world, "fleet_telemetry_ingested_total") < ingested + 1:
        assert time.monotonic() < deadline, "the CoAP report was not ingested"
        await asyncio.sleep(0.05)
    assert await post(forged) == Code.UNAUTHORIZED
    assert await post(misaddressed) == Code.FORBIDDEN
    assert await post(b"{not json") == Code.BAD_REQUEST
    assert await post(good, ContentFormat.TEXT) == Code.UNSUPPORTED_CONTENT_FORMAT


async def test_status_over_coap_is_recorded_like_mqtt(
    coap_world: CoapWorld, client: Context
) -> None:
    report = StatusReport(
        device_id=DEVICE_ID, counter=100, sent=datetime.now(UTC), state=DeviceState.IDLE
    )
    body = sign_model(report, [coap_world.device_key]).to_bytes()
    message = Message(
        code=Code.POST, uri=_uri(coap_world, f"/s/{DEVICE_ID}"), payload=body,
        content_format=ContentFormat.JSON,
    )  # fmt: skip
    response = await client.request(message).response
    assert response.code == Code.CHANGED
    for _ in range(50):
        if coap_world.client.device(DEVICE_ID)["state"] == "idle":
            break
        await asyncio.sleep(0.1)
    assert coap_world.client.device(DEVICE_ID)["state"] == "idle"


async def test_garbage_datagrams_are_counted_and_the_server_keeps_serving(
    coap_world: CoapWorld, plain: Context
) -> None:
    before = _metric(coap_world, "fleet_coap_malformed_total")
    garbage = [b"\x00", b"\xff" * 40, b"GET / HTTP/1.1\r\n\r\n", b"\x40\x01\x00\x01\xff"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for datagram in garbage:
            raw.sendto(datagram, coap_world.host_port)
    await asyncio.sleep(0.3)
    assert _metric(coap_world, "fleet_coap_malformed_total") >= before + 3
    uri = _uri(coap_world, f"/a/{coap_world.artifact_sha256}")
    response = await plain.request(Message(code=Code.GET, uri=uri)).response
    assert hashlib.sha256(response.payload).hexdigest() == coap_world.artifact_sha256


async def test_the_manifest_is_the_delivery_mqtt_retains(
    coap_world: CoapWorld, client: Context
) -> None:
    digest = coap_world.release("2.0.0")
    coap_world.assign(digest)
    retained = await asyncio.to_thread(_retained_desired, coap_world)
    response = await client.request(
        Message(code=Code.GET, uri=_uri(coap_world, f"/m/{DEVICE_ID}"))
    ).response
    assert response.code == Code.CONTENT
    assert response.opt.content_format == ContentFormat.JSON
    assert len(response.payload) > 1024  # so it travelled as Block2
    assert response.payload == retained


async def test_an_observing_device_is_notified_of_its_new_manifest_under_oscore(
    coap_world: CoapWorld, client: Context
) -> None:
    first = coap_world.release("3.0.0")
    coap_world.assign(first)
    request = Message(code=Code.GET, uri=_uri(coap_world, f"/m/{DEVICE_ID}"), observe=0)
    pending = client.request(request)
    registered = await pending.response
    assert b"3.0.0" in _release_version(bytes(registered.payload))

    coap_world.assign(coap_world.release("3.0.1"))
    async with asyncio.timeout(10):
        async for notification in pending.observation:
            if b"3.0.1" in _release_version(bytes(notification.payload)):
                break
    pending.observation.cancel()


def _retained_desired(world: CoapWorld) -> bytes:
    """What a device subscribing to ``tf/d/{id}/desired`` gets once the pump published."""
    received: queue.Queue[bytes] = queue.Queue()
    endpoint = world.local.server.mqtt_endpoint
    mqtt = paho.Client(CallbackAPIVersion.VERSION2, client_id=DEVICE_ID, protocol=paho.MQTTv5)
    mqtt.username_pw_set(DEVICE_ID)
    mqtt.on_message = lambda _c, _u, message: received.put(bytes(message.payload))
    mqtt.on_connect = lambda c, *_: c.subscribe(desired_topic(DEVICE_ID), qos=1)
    mqtt.connect(endpoint.host, endpoint.port)
    mqtt.loop_start()
    try:
        while True:
            payload = received.get(timeout=10)
            if b"2.0.0" in _release_version(payload):
                return payload
    finally:
        mqtt.disconnect()
        mqtt.loop_stop()


def _release_version(delivery: bytes) -> bytes:
    return Delivery.model_validate_json(delivery).release.payload_bytes()
