"""The fleet's MQTT binding (docs/protocol.md §2): topics ⇄ service ports.

Inbound device messages are parsed from their topic and queued for the ingest worker;
nothing here touches the database. Several replicas share the device topics through an
MQTT 5 shared subscription, so each message reaches one replica.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import paho.mqtt.client as paho

from fleet.ratelimit import DeviceBudget
from fleet.services.delivery import desired_topic
from fleet.transports.mqtt import MqttEndpoint, ServerMqtt

__all__ = ["DeviceMessage", "MqttFleetTransport", "parse_device_topic"]

DEVICE_KINDS = ("status", "online", "telemetry")


@dataclass(frozen=True)
class DeviceMessage:
    kind: str
    device_id: str
    payload: bytes
    received_at: datetime
    transport: str = "mqtt"


def parse_device_topic(topic: str) -> tuple[str, str] | None:
    """``tf/d/{id}/{kind}`` → (id, kind) for the kinds a device may send; else None."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "tf" or parts[1] != "d" or not parts[2]:
        return None
    if parts[3] not in DEVICE_KINDS:
        return None
    return parts[2], parts[3]


class MqttFleetTransport:
    def __init__(
        self,
        endpoint: MqttEndpoint,
        inbox: queue.Queue[DeviceMessage],
        *,
        client_id: str,
        share_group: str,
        clock: Callable[[], datetime],
        on_unparsable: Callable[[str], None] = lambda topic: None,
        budget: DeviceBudget | None = None,
    ) -> None:
        self._budget = budget
        self._mqtt = ServerMqtt(endpoint, client_id=client_id, on_message=self.handle_message)
        self._inbox = inbox
        self._share_group = share_group
        self._clock = clock
        self._on_unparsable = on_unparsable

    def start(self, *, timeout: float = 10.0) -> None:
        for kind in DEVICE_KINDS:
            self._mqtt.subscribe(f"$share/{self._share_group}/tf/d/+/{kind}")
        self._mqtt.start(timeout=timeout)

    def stop_receiving(self, *, timeout: float = 2.0) -> None:
        """Take no more device messages (draining); publishing still works."""
        self._mqtt.unsubscribe_all(timeout=timeout)

    def stop(self) -> None:
        self._mqtt.stop()

    @property
    def connected(self) -> bool:
        return self._mqtt.connected

    def handle_message(self, topic: str, payload: bytes) -> None:
        parsed = parse_device_topic(topic)
        if parsed is None:
            self._on_unparsable(topic)
            return
        device_id, kind = parsed
        if self._budget is not None and self._budget.admit(device_id, kind, "mqtt") is not None:
            return  # over its budget: dropped and counted, before any parsing or queueing
        self._inbox.put(DeviceMessage(kind, device_id, payload, self._clock()))

    # -- DesiredStatePublisher ---------------------------------------------------------

    def publish_desired(self, device_id: str, payload: bytes) -> paho.MQTTMessageInfo:
        return self._mqtt.publish(desired_topic(device_id), payload, retain=True)

    def confirm(self, handles: Sequence[object], *, timeout: float) -> None:
        infos = [h for h in handles if isinstance(h, paho.MQTTMessageInfo)]
        self._mqtt.wait_published(infos, timeout=timeout)
