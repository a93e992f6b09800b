"""For transports that answer each request (CoAP): the current desired state, and an
early check of telemetry.

MQTT pushes the Delivery the outbox pump builds; CoAP devices ask for it (``GET
/m/{id}``), so the same bytes are built here from the newest director record.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleet.domain.records import NO_COUNTER_YET
from fleet.services.device_auth import verify_device_message
from fleet.services.director import delivery_bytes
from fleet.store import UnitOfWork
from schemas import Envelope, PublicKey
from schemas.device import TelemetryReport

__all__ = ["UnknownDevice", "current_delivery", "verify_telemetry_sender"]


class UnknownDevice(LookupError):
    code = "unknown_device"


def current_delivery(uow: UnitOfWork, device_id: str, *, roots: Sequence[Envelope]) -> bytes | None:
    """The Delivery of the device's newest director manifest; None if it has none yet."""
    with uow:
        if uow.devices.get(device_id) is None:
            raise UnknownDevice(f"no device {device_id!r}")
        record = uow.director.latest(device_id)
        if record is None:
            return None
        stored = uow.releases.get(record.release_digest)
        assert stored is not None, "a director record names a registered release"
        release = Envelope.from_bytes(stored.envelope_json.encode(), kind="release")
    director = Envelope.from_bytes(record.envelope_json.encode(), kind="director")
    return delivery_bytes(director, release, tuple(roots))


def verify_telemetry_sender(uow: UnitOfWork, device_id: str, payload: bytes) -> TelemetryReport:
    """Check a telemetry envelope's signature and addressee before it is queued.

    The counter (shared with status) and the window are checked when the device inbox
    ingests the report, in order with the device's status reports; this lets a transport
    that answers each request (CoAP) refuse a forged or malformed report at once.
    """
    with uow:
        device = uow.devices.get(device_id)
    if device is None:
        raise UnknownDevice(f"no device {device_id!r}")
    report = verify_device_message(
        payload,
        device_id=device.id,
        key=PublicKey(public=device.public_key_hex),
        last_counter=NO_COUNTER_YET,
        model=TelemetryReport,
    )
    assert isinstance(report, TelemetryReport)
    return report
