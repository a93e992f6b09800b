"""Device → server messages: status and telemetry, signed with the device's own key."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from schemas.common import Count, DeviceId, Digest, Name, PositiveCount, SafeInt, WireModel
from schemas.timestamps import Timestamp

__all__ = [
    "COUNTERS",
    "DEFAULT_DAILY_BUDGET",
    "MAX_DAILY_BUDGET",
    "ComponentVersion",
    "DeviceState",
    "Mechanism",
    "StatusReport",
    "TelemetryReport",
    "TelemetryWindow",
]

COUNTERS = ("inference_errors", "reboots")
"""The counters a telemetry report may carry, each a noised indicator of its window:
``inference_errors`` — at least one window's inference raised; ``reboots`` — the device
booted at least once. ``schemas.privacy.privatise_counters`` clips and noises them."""

DEFAULT_DAILY_BUDGET = 768.0
"""Epsilon per device and UTC day that a device refuses to pass, unless its thresholds
component says otherwise (``Thresholds.daily_budget``).

One report an hour (the toolkit's default window, ``DEFAULT_WINDOW_SECONDS = 3600``) of
up to 8 noised vectors (histograms plus the counters vector) at epsilon 4 spends
``8 * 4 * 24 = 768`` a day, so the default lets the default telemetry through whole and
binds for anything more frequent, at a higher epsilon or with more histograms: 60 s
windows of the same report stop after 24 reports a day. Here, without NumPy, because the
thresholds component (parsed by the signer) defaults to it; ``schemas.privacy``
re-exports it (docs/telemetry.md §4).
"""

MAX_DAILY_BUDGET = 100_000.0
"""The largest daily budget a thresholds component may set: room for 60 s windows of 8
vectors at epsilon 8 (92,160), while a typo such as ``1e9`` (a budget that never binds)
is refused rather than shipped."""

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
    counters: dict[Name, SafeInt] = Field(
        default_factory=dict,
        max_length=len(COUNTERS),
        description=(
            "noised indicators of COUNTERS (inference_errors, reboots): 1 if at least one"
            " happened in the window, plus discrete Laplace noise of scale len(COUNTERS) /"
            " epsilon; empty in reports of devices that predate counters"
        ),
        json_schema_extra={"propertyNames": {"enum": list(COUNTERS)}},
    )

    @field_validator("counters")
    @classmethod
    def _known_counters(cls, counters: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(counters) - set(COUNTERS))
        if unknown:
            raise ValueError(f"unknown counters {unknown}; a report may carry {list(COUNTERS)}")
        return counters
