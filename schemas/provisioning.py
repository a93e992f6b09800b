"""The provisioning bundle: everything a factory line writes into one new device.

``POST /api/v1/devices/{id}/provision`` answers with it, once: the private key (when the
server made the keypair) and the broker password are in no other answer and are not
kept by the server. The OSCORE keys are in no other answer either, but the server
keeps them: they are symmetric. ``fleet-sim unpack`` turns bundles into a simulated fleet.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import Count, DeviceId, Name, PositiveCount, WireModel
from schemas.dsse import Envelope
from schemas.oscore import OscoreKeys

__all__ = ["BUNDLE_FORMAT", "BundleBrokerLogin", "BundleCalibration", "ProvisioningBundle"]

BUNDLE_FORMAT: Literal["tinyfleet.provisioning/1"] = "tinyfleet.provisioning/1"


class BundleBrokerLogin(WireModel):
    url: str = Field(description="the broker's device listener, mqtt:// or mqtts://")
    username: DeviceId
    client_id: DeviceId
    password: str | None = Field(
        description="null when the server does not manage broker logins (a development "
        "broker that takes the device id alone)"
    )


class BundleCalibration(WireModel):
    version: PositiveCount
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    length: Count
    data_base64: str = Field(description="the calibration bytes, as stored for the device")


class ProvisioningBundle(WireModel):
    format: Literal["tinyfleet.provisioning/1"] = BUNDLE_FORMAT
    device_id: DeviceId
    device_class: Name
    tags: tuple[str, ...] = ()
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$", description="raw Ed25519, hex")
    private_key_pem: str | None = Field(
        description="PKCS#8 PEM of the device key when the server made the keypair; null "
        "when the device made its own and only its public key was enrolled"
    )
    root: Envelope = Field(description="the root metadata to pin (the newest trusted)")
    http_base: str = Field(description="prefix of /artifacts/{sha256} for downloads")
    broker: BundleBrokerLogin
    calibration: BundleCalibration | None = None
    coap_keys: OscoreKeys | None = Field(
        default=None,
        description="the device's OSCORE keys, which its CoAP requests for /m, /s and /t "
        "need; in no other answer (a new issue replaces them)",
    )
