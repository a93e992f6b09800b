"""Verifying device-signed messages (status, telemetry) against the enrolled key.

A message is used only if exactly the enrolled device key signed it, the body names the
device whose topic or path it arrived on, and its counter is above the last accepted one.
"""

from __future__ import annotations

import base64
import binascii

from schemas import DocumentError, Envelope, PublicKey, decode_payload
from schemas.device import StatusReport, TelemetryReport
from schemas.documents import Doc
from signer.keys import keyid_of, verify_signature

__all__ = [
    "DeviceMessageRefused",
    "ForgedMessage",
    "MisaddressedMessage",
    "ReplayedMessage",
    "verify_device_message",
]


class DeviceMessageRefused(ValueError):
    code = "device_message_refused"


class ForgedMessage(DeviceMessageRefused):
    code = "forged"


class MisaddressedMessage(DeviceMessageRefused):
    code = "misaddressed"


class ReplayedMessage(DeviceMessageRefused):
    code = "replayed"


def _signed_by(envelope: Envelope, key: PublicKey) -> bool:
    keyid = keyid_of(key)
    if [s.keyid for s in envelope.signatures] != [keyid]:
        return False
    try:
        raw = base64.b64decode(envelope.signatures[0].sig.encode("ascii"), validate=True)
        message = envelope.pae()
    except (binascii.Error, UnicodeEncodeError, DocumentError):
        return False
    return len(raw) == 64 and verify_signature(key, raw, message)


def verify_device_message(
    data: bytes,
    *,
    device_id: str,
    key: PublicKey,
    last_counter: int,
    model: type[Doc],
) -> Doc:
    """Return the decoded report, or raise a ``DeviceMessageRefused`` (or DocumentError)."""
    envelope = Envelope.from_bytes(data)
    if not _signed_by(envelope, key):
        raise ForgedMessage(f"message on {device_id} is not signed by its enrolled key")
    report = decode_payload(envelope, model)
    if not isinstance(report, StatusReport | TelemetryReport):
        raise DocumentError(f"{type(report).__name__} is not a device message")
    if report.device_id != device_id:
        raise MisaddressedMessage(f"body names {report.device_id!r}, arrived for {device_id!r}")
    if report.counter <= last_counter:
        raise ReplayedMessage(f"counter {report.counter} is not above {last_counter}")
    return report
