"""Director manifests: the server's signed, per-device instruction "run release R"."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import Field, model_validator

from schemas.common import Count, DeviceId, Digest, PositiveCount, WireModel
from schemas.dsse import Envelope
from schemas.timestamps import Timestamp

__all__ = ["Action", "Calibration", "Delivery", "DirectorManifest"]


class Action(StrEnum):
    INSTALL = "install"
    ROLLBACK = "rollback"


class Calibration(WireModel):
    version: Count
    sha256: Digest
    length: int = Field(ge=0, le=1024 * 1024)
    media_type: str = "application/octet-stream"


class DirectorManifest(WireModel):
    type: Literal["director"] = "director"
    device_id: DeviceId
    sequence: PositiveCount = Field(description="strictly increasing per device")
    issued: Timestamp
    expires: Timestamp
    release_digest: Digest = Field(description="sha256 of the release envelope's payload bytes")
    calibration: Calibration | None = None
    rollout_id: str | None = Field(default=None, max_length=64)
    wave: Count | None = None
    action: Action = Action.INSTALL

    @model_validator(mode="after")
    def _expires_after_issue(self) -> Self:
        if self.expires <= self.issued:
            raise ValueError("expires must be after issued")
        return self


class Delivery(WireModel):
    """What a device receives on ``tf/d/{id}/desired`` and from CoAP ``GET /m/{id}``.

    ``roots`` carries any root versions newer than the device may have pinned, oldest
    first, so a device can walk the chain one version at a time.
    """

    type: Literal["delivery"] = "delivery"
    director: Envelope
    release: Envelope
    roots: tuple[Envelope, ...] = ()
