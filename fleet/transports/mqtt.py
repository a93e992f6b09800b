"""The server's MQTT client (paho-mqtt 2, MQTT 5): one connection per server process.

Incoming messages are handed to a callback on paho's network thread; the callback must
only enqueue. paho's error codes are mapped to ``fleet.transports.errors`` here and only
here (``_mapped``).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from fleet.transports.errors import BrokerUnavailable, PublishFailed

__all__ = ["MqttEndpoint", "ServerMqtt"]

MessageHandler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class MqttEndpoint:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    # The CA bundle the broker's certificate must chain to; None: the system's.
    ca_file: str | None = None

    @classmethod
    def parse(cls, url: str, *, ca_file: str | None = None) -> MqttEndpoint:
        """``mqtt://`` (port 1883) or ``mqtts://`` (TLS, port 8883: the broker's
        certificate is verified, host name included, against ``ca_file`` or the system's
        trust store)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
            raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"MQTT URL lacks a host: {url!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        if ca_file is not None and not tls:
            raise ValueError(f"a CA file is for mqtts:// URLs, got {url!r}")
        port = parts.port or (8883 if tls else 1883)
        return cls(parts.hostname, port, parts.username, parts.password, tls, ca_file)


@contextmanager
def _mapped(action: str) -> Iterator[None]:
    try:
        yield
    except (OSError, ValueError, RuntimeError) as exc:
        raise BrokerUnavailable(f"MQTT {action} failed: {exc}") from exc


def _check(rc: MQTTErrorCode | int, action: str) -> None:
    if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
        raise BrokerUnavailable(f"MQTT {action}: not connected")
    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        raise PublishFailed(f"MQTT {action}: {paho.error_string(rc)}")


class ServerMqtt:
    """Connects, keeps its subscriptions across reconnects, publishes with QoS 1."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        client_id: str,
        on_message: MessageHandler,
        session_expiry: int = 86_400,
    ):
        self._endpoint = endpoint
        self._session_expiry = session_expiry
        self._on_message = on_message
        self._filters: list[str] = []
        self._connected = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
        )
        if endpoint.username:
            self._client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            with _mapped("TLS setup"):
                self._client.tls_set_context(ssl.create_default_context(cafile=endpoint.ca_file))
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message

    def start(self, *, timeout: float = 10.0) -> None:
        # A persistent session (same client id, clean_start False) makes the broker keep
        # the QoS 1 device messages that arrive while this server restarts.
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._session_expiry
        with _mapped("connect"):
            self._client.connect_async(
                self._endpoint.host,
                self._endpoint.port,
                keepalive=30,
                clean_start=False,
                properties=properties,
            )
            self._client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            # paho keeps a failed handshake's reason to itself; say where to look.
            tls = (
                f" over TLS (is the broker's certificate for {self._endpoint.host!r}, "
                "from a CA in FLEET_MQTT_CA_FILE or the system's trust store?)"
                if self._endpoint.tls
                else ""
            )
            raise BrokerUnavailable(
                f"no CONNACK from {self._endpoint.host}:{self._endpoint.port}{tls} in {timeout}s"
            )

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def subscribe(self, topic_filter: str) -> None:
        """Subscribe now and again after every reconnect."""
        self._filters.append(topic_filter)
        if self.connected:
            self._subscribe_all([topic_filter])

    def unsubscribe_all(self, *, timeout: float = 2.0) -> None:
        """Stop receiving: drop every filter (for good, reconnects included) and wait up
        to ``timeout`` for the broker's UNSUBACK; what arrived before it is still handled.
        With a shared subscription the broker sends the rest to the group's other members.
        """
        filters, self._filters = self._filters, []
        if not filters or not self.connected:
            return
        acknowledged = threading.Event()
        self._client.on_unsubscribe = lambda *args: acknowledged.set()
        with _mapped("unsubscribe"):
            rc, _mid = self._client.unsubscribe(filters)
        _check(rc, "unsubscribe")
        if not acknowledged.wait(timeout):
            raise BrokerUnavailable(f"no UNSUBACK in {timeout}s")

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> paho.MQTTMessageInfo:
        with _mapped("publish"):
            info = self._client.publish(topic, payload, qos=1, retain=retain)
        _check(info.rc, f"publish to {topic}")
        return info

    def wait_published(self, infos: Sequence[paho.MQTTMessageInfo], *, timeout: float) -> None:
        """Block until the broker acknowledged every publish (PUBACK), or raise."""
        deadline = time.monotonic() + timeout
        for info in infos:
            remaining = max(0.0, deadline - time.monotonic())
            with _mapped("publish"):
                info.wait_for_publish(remaining)
            if not info.is_published():
                raise BrokerUnavailable(f"no PUBACK for message {info.mid} in {timeout}s")

    def _subscribe_all(self, filters: Sequence[str]) -> None:
        if not filters:
            return
        options = SubscribeOptions(qos=1)
        with _mapped("subscribe"):
            rc, _mid = self._client.subscribe([(f, options) for f in filters])
        _check(rc, "subscribe")

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            return
        self._subscribe_all(self._filters)
        self._connected.set()

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()

    def _handle_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self._on_message(msg.topic, bytes(msg.payload))
