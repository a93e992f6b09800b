"""Device classes, devices and what the server knows of each device."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from pydantic import Field, field_validator

from fleet.api.models.common import (
    ByteSize,
    DeviceId,
    Digest,
    Name,
    OpName,
    PublicKeyHex,
    RequestModel,
    ResponseModel,
    Tags,
)
from fleet.domain.records import Calibration, Device, DeviceClass, DirectorRecord, StatusEvent
from fleet.services.broker_accounts import BrokerLogin
from fleet.services.catalog import Enrollment
from fleet.services.provisioning import ProvisionRequest
from schemas import Action, DeviceState, Envelope

__all__ = [
    "BrokerLoginPublic",
    "CalibrationPublic",
    "ComponentPublic",
    "DeviceClassCreate",
    "DeviceClassList",
    "DeviceClassPublic",
    "DeviceCreate",
    "DeviceEnrolled",
    "DeviceList",
    "DevicePublic",
    "DeviceTags",
    "DirectionPublic",
    "EnrollmentResult",
    "ProvisionCreate",
    "StatusEventPublic",
]


class DeviceClassCreate(RequestModel):
    name: Name
    ram_bytes: ByteSize
    flash_bytes: ByteSize
    supported_ops: list[OpName] = Field(default_factory=list, max_length=512)
    cpu: str | None = Field(default=None, pattern=r"^[\x21-\x7e][\x20-\x7e]{0,63}$")

    def to_record(self) -> DeviceClass:
        return DeviceClass(
            name=self.name,
            ram_bytes=self.ram_bytes,
            flash_bytes=self.flash_bytes,
            supported_ops=frozenset(self.supported_ops),
            cpu=self.cpu,
        )


class DeviceClassPublic(ResponseModel):
    name: str
    ram_bytes: int
    flash_bytes: int
    supported_ops: list[str]
    cpu: str | None

    @classmethod
    def from_record(cls, record: DeviceClass) -> DeviceClassPublic:
        return cls(
            name=record.name,
            ram_bytes=record.ram_bytes,
            flash_bytes=record.flash_bytes,
            supported_ops=sorted(record.supported_ops),
            cpu=record.cpu,
        )


class DeviceClassList(ResponseModel):
    items: list[DeviceClassPublic]


class DeviceCreate(RequestModel):
    """One device to enroll; the same shape as an entry of ``fleet-sim keys``'s devices.json."""

    id: DeviceId
    device_class: Name
    public_key: PublicKeyHex
    tags: Tags = Field(default_factory=list)

    def to_enrollment(self) -> Enrollment:
        return Enrollment(
            device_id=self.id,
            device_class=self.device_class,
            public_key_hex=self.public_key,
            tags=frozenset(self.tags),
        )


# base64 of MAX_CALIBRATION_BYTES (1 MiB), with its padding.
MAX_CALIBRATION_BASE64 = 4 * ((1024 * 1024 + 2) // 3)


class ProvisionCreate(RequestModel):
    """A device to provision; its id is in the path."""

    device_class: Name
    tags: Tags = Field(default_factory=list)
    public_key: PublicKeyHex | None = Field(
        default=None,
        description="the key the device made itself; without it the server makes the "
        "keypair and returns the private key in the bundle, once",
    )
    calibration_base64: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CALIBRATION_BASE64,
        pattern=r"^[A-Za-z0-9+/]+={0,2}$",
        description="the device's initial calibration (at most 1 MiB), base64",
    )

    @field_validator("calibration_base64")
    @classmethod
    def _decodes(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"not base64: {exc}") from exc
        return value

    def to_request(self, device_id: str) -> ProvisionRequest:
        return ProvisionRequest(
            device_id=device_id,
            device_class=self.device_class,
            tags=frozenset(self.tags),
            public_key_hex=self.public_key,
            calibration=None
            if self.calibration_base64 is None
            else base64.b64decode(self.calibration_base64, validate=True),
        )


class DeviceTags(RequestModel):
    tags: Tags


class BrokerLoginPublic(ResponseModel):
    """A device's broker login. The password is shown this once; the server keeps no
    copy (the broker keeps a salted hash)."""

    username: str
    client_id: str
    password: str

    @classmethod
    def from_login(cls, login: BrokerLogin) -> BrokerLoginPublic:
        return cls(username=login.username, client_id=login.client_id, password=login.password)


class EnrollmentResult(ResponseModel):
    enrolled: int
    ids: list[str]
    broker_logins: list[BrokerLoginPublic] = Field(
        description="one per device, in order, when the server manages broker logins "
        "(FLEET_BROKER_ACCOUNTS=dynsec); empty otherwise. Shown only here."
    )


class ComponentPublic(ResponseModel):
    kind: str
    version: str
    security_version: int


class DevicePublic(ResponseModel):
    id: str
    device_class: str
    public_key: str
    keyid: str
    tags: list[str]
    enrolled_at: datetime
    state: DeviceState | None
    running_release: str | None
    components: list[ComponentPublic]
    online: bool
    last_seen: datetime | None
    director_sequence: int = Field(description="the last director sequence issued")
    revoked_at: datetime | None = Field(
        description="when it was revoked: its broker login and signed messages are refused"
    )
    decommissioned_at: datetime | None = Field(
        description="when it was retired: key, tags, calibration and broker login deleted"
    )

    @classmethod
    def from_record(cls, record: Device) -> DevicePublic:
        return cls(
            id=record.id,
            device_class=record.device_class,
            public_key=record.public_key_hex,
            keyid=record.keyid,
            tags=sorted(record.tags),
            enrolled_at=record.enrolled_at,
            state=record.state,
            running_release=record.running_release_digest,
            components=[
                ComponentPublic(kind=c.kind, version=c.version, security_version=c.security_version)
                for c in record.components
            ],
            online=record.online,
            last_seen=record.last_seen,
            director_sequence=record.director_sequence,
            revoked_at=record.revoked_at,
            decommissioned_at=record.decommissioned_at,
        )


class DeviceEnrolled(DevicePublic):
    broker_login: BrokerLoginPublic | None = Field(
        description="when the server manages broker logins: the device's, shown only here"
    )


class DeviceList(ResponseModel):
    items: list[DevicePublic]
    next_after: str | None = Field(description="pass as `after` for the next page; null at the end")


class StatusEventPublic(ResponseModel):
    counter: int
    state: DeviceState
    received_at: datetime
    release_digest: str | None
    error_code: str | None
    detail: str | None

    @classmethod
    def from_record(cls, record: StatusEvent) -> StatusEventPublic:
        return cls(
            counter=record.counter,
            state=record.state,
            received_at=record.received_at,
            release_digest=record.release_digest,
            error_code=record.error_code,
            detail=record.detail,
        )


class DirectionPublic(ResponseModel):
    """The latest signed director manifest for a device, and whether it was published."""

    device_id: str
    sequence: int
    release_digest: Digest
    action: Action
    issued_at: datetime
    expires_at: datetime
    rollout_id: str | None
    wave: int | None
    published: bool
    published_at: datetime | None
    envelope: Envelope

    @classmethod
    def from_record(cls, record: DirectorRecord) -> DirectionPublic:
        return cls(
            device_id=record.device_id,
            sequence=record.sequence,
            release_digest=record.release_digest,
            action=record.action,
            issued_at=record.issued_at,
            expires_at=record.expires_at,
            rollout_id=record.rollout_id,
            wave=record.wave,
            published=record.published_at is not None,
            published_at=record.published_at,
            envelope=Envelope.model_validate_json(record.envelope_json),
        )


class CalibrationPublic(ResponseModel):
    device_id: str
    version: int
    sha256: str
    length: int

    @classmethod
    def from_record(cls, record: Calibration) -> CalibrationPublic:
        return cls(
            device_id=record.device_id,
            version=record.version,
            sha256=record.sha256,
            length=record.length,
        )
