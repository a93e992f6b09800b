"""A device's OSCORE keys (RFC 8613): what protects its CoAP requests to the server.

Both ends derive the same security context from these values (HKDF-SHA256,
AES-CCM-16-64-128, the RFC's defaults). The device sends as ``device_kid`` and the
server as ``server_id``; the server finds a device's context by the kid its requests
carry, so a kid is unique in a fleet. Hex on the wire, like every key in the contract.
"""

from __future__ import annotations

from pydantic import Field

from schemas.common import WireModel

__all__ = ["OscoreKeys"]

# AES-CCM-16-64-128 has a 13-byte nonce; a sender id may be at most 13 - 6 bytes.
_ID = r"^([0-9a-f]{2}){0,7}$"


class OscoreKeys(WireModel):
    master_secret: str = Field(pattern=r"^([0-9a-f]{2}){16,64}$", description="hex, 16-64 bytes")
    master_salt: str = Field(default="", pattern=r"^([0-9a-f]{2}){0,64}$", description="hex")
    device_kid: str = Field(
        pattern=r"^([0-9a-f]{2}){1,7}$", description="the device's sender id, hex, 1-7 bytes"
    )
    server_id: str = Field(default="", pattern=_ID, description="the server's sender id, hex")
