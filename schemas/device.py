"""Device → server messages: status and telemetry, signed with the device's own key."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.common import Count, DeviceId, Digest, Name, PositiveCount, SafeInt, WireModel
from schemas.timestamps import Timestamp

__all__ = [
    "ComponentVersion",
    "DeviceState",
    "Mechanism",
    "StatusReport",
    "TelemetryReport",
    "TelemetryWindow",
]

ErrorCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class DeviceState(StrEnum):
    IDLE = "idle"
    NOTIFIED = "notified"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    VERIFYING = "verifying"
    INSTALLING = "installing"
    REBOOTING = "rebooting"
    HEALTHY = "healthy"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"


class ComponentVersion(WireModel):
    kind: Name
    version: str = Field(min_length=1, max_length=64)
    security_version: Count


class StatusReport(WireModel):
    type: Literal["status"] = "status"
    device_id: DeviceId
    counter: Count = Field(description="strictly increasing per device; replay defence")
    sent: Timestamp
    state: DeviceState
    release_digest: Digest | None = Field(
        default=None, description="the release this status is about"
    )
    running_release_digest: Digest | None = None
    components: tuple[ComponentVersion, ...] = ()
    director_sequence: Count | None = None
    progress: float | None = Field(default=None, ge=0.0, le=1.0)
    error_code: ErrorCode | None = None
    detail: str | None = Field(default=None, max_length=256)


class Mechanism(WireModel):
    name: Literal["discrete_laplace", "none"]
    epsilon: float = Field(gt=0.0, le=64.0)
    cap: PositiveCount = Field(description="most a device adds to one histogram per window")


class TelemetryWindow(WireModel):
    start: Timestamp
    seconds: int = Field(ge=1, le=7 * 86_400)


class TelemetryReport(WireModel):
    type: Literal["telemetry"] = "telemetry"
    device_id: DeviceId
    counter: Count
    window: TelemetryWindow
    release_digest: Digest
    model_version: str = Field(min_length=1, max_length=64)
    mechanism: Mechanism
    histograms: dict[Name, tuple[SafeInt, ...]] = Field(max_length=64)
    counters: dict[Name, SafeInt] = Field(default_factory=dict, max_length=32)
