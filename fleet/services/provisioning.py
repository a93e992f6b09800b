"""Provisioning: one device enrolled, and everything its factory line writes into it.

One transaction enrolls the device, queues its broker login and stores its initial
calibration, so a refused request leaves nothing behind and an accepted one has all of
it. The keypair is made here unless the device made its own (then only its public key
is enrolled, and the private key never leaves the device). The private key and the
broker password are returned in the bundle and kept nowhere on the server.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fleet.domain.records import Calibration, Device
from fleet.services.artifacts import add_calibration_in, put_blob
from fleet.services.broker_accounts import BrokerLogin
from fleet.services.catalog import Enrollment, enroll_in
from fleet.services.coap_keys import issue_coap_keys_in
from fleet.store import BlobStore, UnitOfWork
from schemas import Envelope
from schemas.oscore import OscoreKeys
from schemas.provisioning import BundleBrokerLogin, BundleCalibration, ProvisioningBundle
from signer.keys import SigningKey, private_key_pem

__all__ = ["DeviceEndpoints", "ProvisionRequest", "provision_device"]


@dataclass(frozen=True)
class ProvisionRequest:
    device_id: str
    device_class: str
    tags: frozenset[str] = frozenset()
    public_key_hex: str | None = None
    """The device's own public key; None: the server makes the keypair."""
    calibration: bytes | None = None


@dataclass(frozen=True)
class DeviceEndpoints:
    """Where a device reaches the service: what the bundle tells it."""

    mqtt_url: str
    http_base: str
    root: Envelope


def provision_device(
    uow: UnitOfWork,
    blobs: BlobStore,
    request: ProvisionRequest,
    endpoints: DeviceEndpoints,
    *,
    broker_logins: bool,
    max_calibration_bytes: int,
    actor: str,
    now: datetime,
) -> ProvisioningBundle:
    key = SigningKey.generate() if request.public_key_hex is None else None
    public_hex = key.public.public if key is not None else request.public_key_hex
    assert public_hex is not None
    blob = None
    if request.calibration is not None:
        blob = put_blob(blobs, [request.calibration], max_calibration_bytes)
    enrollment = Enrollment(request.device_id, request.device_class, public_hex, request.tags)
    with uow:
        enrolled = enroll_in(uow, [enrollment], actor=actor, now=now, broker_logins=broker_logins)
        calibration = None
        if blob is not None:
            sha256, length = blob
            calibration = add_calibration_in(
                uow, request.device_id, sha256, length, actor=actor, now=now
            )
        coap_keys = issue_coap_keys_in(uow, request.device_id, actor=actor, now=now)
        uow.audit.append(
            at=now,
            actor=actor,
            action="device.provision",
            subject=request.device_id,
            detail={"keypair": "server" if key is not None else "device"},
        )
        uow.commit()
    (device,) = enrolled.devices
    return _bundle(device, key, enrolled.broker_logins, calibration, coap_keys, request, endpoints)


def _bundle(
    device: Device,
    key: SigningKey | None,
    logins: Sequence[BrokerLogin],
    calibration: Calibration | None,
    coap_keys: OscoreKeys,
    request: ProvisionRequest,
    endpoints: DeviceEndpoints,
) -> ProvisioningBundle:
    login = next(iter(logins), None)
    return ProvisioningBundle(
        device_id=device.id,
        device_class=device.device_class,
        tags=tuple(sorted(device.tags)),
        public_key=device.public_key_hex,
        private_key_pem=None if key is None else private_key_pem(key).decode(),
        root=endpoints.root,
        http_base=endpoints.http_base,
        broker=BundleBrokerLogin(
            url=endpoints.mqtt_url,
            username=device.id,
            client_id=device.id,
            password=None if login is None else login.password,
        ),
        calibration=None
        if calibration is None or request.calibration is None
        else BundleCalibration(
            version=calibration.version,
            sha256=calibration.sha256,
            length=calibration.length,
            data_base64=base64.b64encode(request.calibration).decode(),
        ),
        coap_keys=coap_keys,
    )
