"""The device's side of the wire contract (docs/protocol.md §2), written down once.

MQTT (v5, paho-mqtt 2.x with ``CallbackAPIVersion.VERSION2``):

==========================  ================  ===  =====================================
topic                       direction         QoS  payload
==========================  ================  ===  =====================================
``tf/d/{id}/desired``       server → device   1    retained; JSON bytes of a
                                                   ``schemas.Delivery``, at most 64 KiB
``tf/d/{id}/status``        device → server   1    ``Envelope.to_bytes()`` of a
                                                   ``schemas.StatusReport`` signed with
                                                   the device's own Ed25519 key
``tf/d/{id}/online``        device            1    retained; ``b"online"`` on connect,
                                                   ``b"offline"`` as the last will
==========================  ================  ===  =====================================

A device connects with client id **and** username equal to its device id (the broker
runs ``use_username_as_clientid true`` and ``pattern readwrite tf/d/%u/#``) and, in dev
configs, no password. It starts a clean session on every connect and subscribes again, so
the retained ``desired`` arrives after each (re)connect; a device recognises a Delivery
it already accepted by the sha256 of its director payload and does not act on it twice.

The status ``counter`` rises by one for every report and is persisted before the report
is sent; ``sent`` comes from the device's injected clock. A report's ``state`` follows
``notified → downloading (progress) → downloaded → verifying → installing → rebooting →
healthy | failed(error_code) | rolled_back(error_code)``; a Delivery the trust rules
refuse is reported as ``refused`` with ``error_code`` = the refusal's ``code`` and does
not change the device. On every (re)start a device reports its last lifecycle state again
(``idle`` before its first update) so the server learns what it runs.

HTTP: ``GET {http_base}/artifacts/{sha256}`` for firmware, model, thresholds and the
calibration blob named by the director manifest. A device resuming a download sends
``Range: bytes=N-``; the server answers ``206`` with ``Content-Range: bytes N-(L-1)/L``
or ``200`` with the whole body (the device then starts again from byte 0).

CoAP (a device's alternative to MQTT + HTTP): ``GET /m/{id}`` observed for the same
Delivery bytes, Block2 ``GET /a/{sha256}`` for artifacts, ``POST /s/{id}`` for the same
status envelopes; written down in ``device_sim.coap_link``.
"""

from __future__ import annotations

from pydantic import ValidationError

from schemas import Delivery, Envelope, StatusReport, strict_loads
from schemas.errors import DocumentError
from signer.keys import SigningKey
from signer.signing import sign_model

__all__ = [
    "DESIRED_CAP",
    "OFFLINE",
    "ONLINE",
    "QOS",
    "SERVER_API_PREFIX",
    "SERVER_USERNAME",
    "artifact_url",
    "desired_topic",
    "online_topic",
    "parse_delivery",
    "signed_status",
    "status_topic",
]

QOS = 1
DESIRED_CAP = 64 * 1024
ONLINE = b"online"
OFFLINE = b"offline"
SERVER_USERNAME = "fleet-server"
"""The broker user the server connects as (ACL: read/write ``tf/#``)."""


def desired_topic(device_id: str) -> str:
    return f"tf/d/{device_id}/desired"


def status_topic(device_id: str) -> str:
    return f"tf/d/{device_id}/status"


def online_topic(device_id: str) -> str:
    return f"tf/d/{device_id}/online"


# Where a tinyfleet server serves artifacts (``{server}/api/v1/artifacts/{sha256}``).
SERVER_API_PREFIX = "/api/v1"


def artifact_url(http_base: str, sha256: str) -> str:
    return f"{http_base.rstrip('/')}/artifacts/{sha256}"


def parse_delivery(payload: bytes) -> Delivery:
    """Size cap first, then duplicate keys and constants, then the model, strictly."""
    strict_loads(payload, cap=DESIRED_CAP, what="delivery")
    try:
        return Delivery.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "delivery"
        raise DocumentError(f"delivery: {where}: {first['msg']}") from exc


def signed_status(report: StatusReport, key: SigningKey) -> Envelope:
    return sign_model(report, [key])
