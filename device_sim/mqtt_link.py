"""The device's MQTT side: many paho clients on one asyncio loop, no thread per device.

paho-mqtt's documented external-loop pattern (``examples/loop_asyncio.py``): each
client's socket callbacks register its socket with the event loop (``add_reader`` →
``loop_read``, ``add_writer`` → ``loop_write``) and a periodic task calls ``loop_misc``
for keepalives. ``MqttHub`` runs that one periodic task for every client of the fleet.

``DeviceLink`` follows the wire contract in ``device_sim.wire``: MQTT 5, client id and
username = device id, its broker password if it has one, last will ``offline``
(retained, QoS 1), ``online`` published retained on every connect, ``desired``
subscribed on every connect (clean start, so the retained Delivery is redelivered),
reconnects with jittered backoff.

``connect`` opens the TCP connection with paho's blocking ``reconnect`` (bounded by
``connect_timeout``); on a LAN that costs well under a millisecond per device, and the
MQTT handshake itself is asynchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device_sim.wire import OFFLINE, ONLINE, QOS, desired_topic, online_topic

__all__ = ["DeviceLink", "LinkError", "MqttHub"]

log = logging.getLogger(__name__)

SocketLike = Any  # paho types its sockets as ``socket.socket | ssl.SSLSocket | WebsocketWrapper``


class LinkError(Exception):
    """The broker refused or dropped the connection before it was established."""


class MqttHub:
    """Drives any number of paho clients from one event loop."""

    def __init__(self, *, misc_interval: float = 1.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._clients: set[mqtt.Client] = set()
        self._misc_interval = misc_interval
        self._misc_task = self._loop.create_task(self._misc())

    def attach(self, client: mqtt.Client) -> None:
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self._clients.add(client)

    def detach(self, client: mqtt.Client) -> None:
        self._clients.discard(client)

    async def aclose(self) -> None:
        self._misc_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._misc_task

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(self._misc_interval)
            for client in list(self._clients):
                client.loop_misc()

    def _on_socket_open(self, client: mqtt.Client, _userdata: Any, sock: SocketLike) -> None:
        self._loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, sock: SocketLike) -> None:
        if self._watchable(sock):
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _on_register_write(self, client: mqtt.Client, _userdata: Any, sock: SocketLike) -> None:
        self._loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, _client: mqtt.Client, _userdata: Any, sock: SocketLike) -> None:
        if self._watchable(sock):
            self._loop.remove_writer(sock)

    def _watchable(self, sock: SocketLike) -> bool:
        # paho also calls back from Client.__del__, possibly after the socket was closed
        # or after the event loop that watched it has ended.
        return not self._loop.is_closed() and sock.fileno() >= 0


class DeviceLink:
    """One device's MQTT connection; ``on_desired`` gets each ``desired`` payload."""

    def __init__(
        self,
        hub: MqttHub,
        *,
        device_id: str,
        host: str,
        port: int,
        on_desired: Callable[[bytes], None],
        keepalive: int = 60,
        connect_timeout: float = 5.0,
        rng: random.Random | None = None,
        password: str | None = None,
    ) -> None:
        self.device_id = device_id
        self._password = password
        self._hub = hub
        self._host = host
        self._port = port
        self._keepalive = keepalive
        self._on_desired = on_desired
        self._rng = rng or random.Random()
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._was_connected = False
        self._connected: asyncio.Future[None] | None = None
        self._disconnected: asyncio.Future[None] = self._loop.create_future()
        self._reconnect_task: asyncio.Task[None] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._client = self._make_client(connect_timeout)

    def _make_client(self, connect_timeout: float) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        client.username_pw_set(self.device_id, self._password)
        client.will_set(online_topic(self.device_id), OFFLINE, qos=QOS, retain=True)
        client.connect_timeout = connect_timeout
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._hub.attach(client)
        return client

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect and wait for the broker's CONNACK; raises ``LinkError`` if refused."""
        self._connected = self._loop.create_future()
        try:
            self._client.connect(self._host, self._port, self._keepalive, clean_start=True)
        except OSError as exc:
            raise LinkError(
                f"{self.device_id}: cannot reach {self._host}:{self._port}: {exc}"
            ) from exc
        async with asyncio.timeout(timeout):
            await self._connected

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> asyncio.Future[None]:
        """Queue a QoS 1 publish; the future completes on PUBACK.

        While disconnected paho keeps the message and sends it after the next CONNACK, so
        callers need not wait. Raises ``LinkError`` if paho cannot queue it at all.
        """
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise LinkError(f"{self.device_id}: cannot publish on {topic}: {info.rc!r}")
        done: asyncio.Future[None] = self._loop.create_future()
        if info.is_published():
            done.set_result(None)
        else:
            self._acks[info.mid] = done
        return done

    async def close(self, timeout: float = 2.0) -> None:
        """Say ``offline`` and disconnect cleanly (the will is not sent)."""
        self._closing = True
        self._cancel_reconnect()
        if self._client.is_connected():
            with contextlib.suppress(TimeoutError, LinkError):
                async with asyncio.timeout(timeout):
                    await self.publish(online_topic(self.device_id), OFFLINE, retain=True)
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._disconnected)
        self._drop()

    def abort(self) -> None:
        """Lose the connection without DISCONNECT, as a power cut does: the will fires."""
        self._closing = True
        self._cancel_reconnect()
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._drop()

    def _drop(self) -> None:
        sock = self._client.socket()
        if sock is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            sock.close()
        self._hub.detach(self._client)
        for future in self._acks.values():
            future.cancel()
        self._acks.clear()

    # -- paho callbacks (VERSION2 signatures) -------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("%s: broker refused the connection: %s", self.device_id, reason)
            self._settle_connect(LinkError(f"{self.device_id}: connection refused: {reason}"))
            return
        client.subscribe(desired_topic(self.device_id), qos=QOS)
        client.publish(online_topic(self.device_id), ONLINE, qos=QOS, retain=True)
        self._was_connected = True
        log.debug("%s: connected", self.device_id)
        self._settle_connect(None)

    def _settle_connect(self, error: Exception | None) -> None:
        future = self._connected
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._settle_connect(LinkError(f"{self.device_id}: disconnected: {reason}"))
        if self._closing:
            if not self._disconnected.done():
                self._disconnected.set_result(None)
            return
        if not self._was_connected:
            return  # ``connect`` failed; its caller decides whether to try again
        log.info("%s: connection lost (%s); reconnecting", self.device_id, reason)
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = self._loop.create_task(self._reconnect())

    async def _reconnect(self, first_delay: float = 0.5, max_delay: float = 30.0) -> None:
        delay = first_delay
        while not self._closing:
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            try:
                self._client.reconnect()
                return
            except OSError as exc:
                log.info("%s: reconnect failed: %s", self.device_id, exc)
                delay = min(delay * 2, max_delay)

    def _cancel_reconnect(self) -> None:
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == desired_topic(self.device_id):
            self._on_desired(bytes(message.payload))
        else:
            log.warning("%s: message on unexpected topic %s", self.device_id, message.topic)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        _reason: ReasonCode,
        _properties: Properties,
    ) -> None:
        future = self._acks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)
