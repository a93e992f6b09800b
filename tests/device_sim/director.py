"""A minimal in-test director and server for driving simulated devices over real transports.

``Director`` holds real Ed25519 keys (root 1-of-1, release 2-of-2, director 1-of-1),
signs root, release and director manifests with ``signer`` and builds the Delivery bytes
a server publishes. ``ServerClient`` is the server's MQTT side: it connects as
``fleet-server``, publishes ``desired`` retained, and collects ``status`` (through a shared
subscription) and ``online`` messages, verifying each status with the device's key.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device_sim.state import Slot
from device_sim.wire import SERVER_USERNAME, desired_topic
from fleet.transports.embedded_broker import Broker
from schemas import (
    Calibration,
    Component,
    ComponentKind,
    ComponentVersion,
    Constraints,
    Delivery,
    DirectorManifest,
    Envelope,
    PublicKey,
    ReleaseManifest,
    Role,
    RoleKeys,
    RootMetadata,
    StatusReport,
    canonical_bytes,
    decode_payload,
)
from signer.acceptance import payload_digest
from signer.keys import SigningKey, verify_signature
from signer.signing import sign_model

__all__ = [
    "DEVICE_CLASS",
    "START",
    "Director",
    "Release",
    "ServerClient",
    "states",
    "verify_status",
]

START = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
DEVICE_CLASS = "nrf52840-kws"
MEDIA_TYPES = {
    ComponentKind.FIRMWARE: "application/octet-stream",
    ComponentKind.MODEL: "application/vnd.tflite",
    ComponentKind.THRESHOLDS: "application/json",
}


@dataclass(frozen=True)
class Release:
    envelope: Envelope
    manifest: ReleaseManifest
    blobs: dict[str, bytes]

    @property
    def digest(self) -> str:
        return payload_digest(self.envelope)


def _blob(label: str, size: int) -> bytes:
    seed = hashlib.sha256(label.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


class Director:
    def __init__(self, *, now: datetime = START) -> None:
        self.now = now
        self.root_key = SigningKey.generate()
        self.release_keys = [SigningKey.generate(), SigningKey.generate()]
        self.director_key = SigningKey.generate()
        self._sequences: dict[str, int] = {}
        every = [self.root_key, *self.release_keys, self.director_key]
        root = RootMetadata(
            version=1,
            expires=now + timedelta(days=365),
            keys={key.keyid: key.public for key in every},
            roles={
                Role.ROOT: RoleKeys(keyids=(self.root_key.keyid,), threshold=1),
                Role.RELEASE: RoleKeys(
                    keyids=tuple(k.keyid for k in self.release_keys), threshold=2
                ),
                Role.DIRECTOR: RoleKeys(keyids=(self.director_key.keyid,), threshold=1),
            },
        )
        self.root = sign_model(root, [self.root_key])

    def release(
        self,
        version: str,
        *,
        security_version: int = 1,
        size: int = 4096,
        constraints: Constraints | None = None,
    ) -> Release:
        """Firmware of ``size`` bytes, a model and thresholds, signed by both release keys."""
        blobs: dict[str, bytes] = {}
        components = []
        for kind in ComponentKind:
            data = _blob(f"{kind.value} {version}", size if kind == ComponentKind.FIRMWARE else 512)
            digest = hashlib.sha256(data).hexdigest()
            blobs[digest] = data
            components.append(
                Component(
                    kind=kind,
                    name=f"kws-{kind.value}",
                    version=version,
                    security_version=security_version,
                    sha256=digest,
                    length=len(data),
                    media_type=MEDIA_TYPES[kind],
                )
            )
        manifest = ReleaseManifest(
            name="kws",
            version=version,
            device_class=DEVICE_CLASS,
            created=self.now,
            components=tuple(components),
            constraints=constraints or Constraints(),
        )
        return Release(sign_model(manifest, self.release_keys), manifest, blobs)

    def delivery(
        self,
        device_id: str,
        release: Release,
        *,
        sequence: int | None = None,
        calibration: bytes | None = None,
        roots: tuple[Envelope, ...] = (),
    ) -> bytes:
        """The ``desired`` payload: JSON bytes of a Delivery with a fresh director manifest."""
        if sequence is None:
            sequence = self._sequences.get(device_id, 0) + 1
        self._sequences[device_id] = max(self._sequences.get(device_id, 0), sequence)
        manifest = DirectorManifest(
            device_id=device_id,
            sequence=sequence,
            issued=self.now,
            expires=self.now + timedelta(hours=1),
            release_digest=release.digest,
            calibration=(
                Calibration(
                    version=1,
                    sha256=hashlib.sha256(calibration).hexdigest(),
                    length=len(calibration),
                )
                if calibration is not None
                else None
            ),
        )
        delivery = Delivery(
            director=sign_model(manifest, [self.director_key]),
            release=release.envelope,
            roots=roots,
        )
        return canonical_bytes(delivery.model_dump(mode="json"))

    def next_root(self) -> Envelope:
        """Root v+1 with the same keys, signed by the root key (old and new threshold)."""
        current = decode_payload(self.root, RootMetadata)
        following = current.model_copy(update={"version": current.version + 1})
        self.root = sign_model(following, [self.root_key])
        return self.root

    def factory_slot(self, release: Release) -> Slot:
        """What the factory flashed into slot a: the release, without its files."""
        return Slot(
            release_digest=release.digest,
            release=release.envelope,
            components=tuple(
                ComponentVersion(
                    kind=c.kind.value, version=c.version, security_version=c.security_version
                )
                for c in release.manifest.components
            ),
        )


def verify_status(payload: bytes, public: PublicKey) -> StatusReport:
    """What the server does with a status: the device's one signature, then the payload."""
    envelope = Envelope.from_bytes(payload, kind="status")
    (signature,) = envelope.signatures
    assert signature.keyid == public.keyid
    assert verify_signature(public, base64.b64decode(signature.sig), envelope.pae())
    return decode_payload(envelope, StatusReport)


class ServerClient:
    """The server's MQTT side for tests, on paho's own network thread."""

    def __init__(self, broker: Broker) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[str, bytes]] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=SERVER_USERNAME,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.username_pw_set(SERVER_USERNAME)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._client.subscribe([("$share/fleet/tf/d/+/status", 1), ("tf/d/+/online", 1)])
        assert self._subscribed.wait(5), "the broker did not acknowledge the subscription"

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        with self._lock:
            self._messages.append((message.topic, bytes(message.payload)))

    def publish_desired(self, device_id: str, payload: bytes) -> None:
        info = self._client.publish(desired_topic(device_id), payload, qos=1, retain=True)
        info.wait_for_publish(timeout=5)

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload in self._messages if t == topic]

    def statuses(self, device_id: str, public: PublicKey) -> list[StatusReport]:
        return [verify_status(p, public) for p in self.payloads(f"tf/d/{device_id}/status")]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def states(reports: Sequence[StatusReport]) -> list[str]:
    return [report.state.value for report in reports]
