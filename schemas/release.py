"""Release manifests: one consistent, offline-signed set of components for a device class."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import Field, model_validator

from schemas.common import Count, Digest, Name, WireModel
from schemas.timestamps import Timestamp

__all__ = ["Component", "ComponentKind", "Constraints", "ReleaseManifest"]

# The largest artifact a release may declare (a firmware image for a big MCU is a few MiB).
MAX_ARTIFACT_LENGTH = 64 * 1024 * 1024


class ComponentKind(StrEnum):
    FIRMWARE = "firmware"
    MODEL = "model"
    THRESHOLDS = "thresholds"


class Component(WireModel):
    kind: ComponentKind
    name: Name
    version: str = Field(min_length=1, max_length=64)
    security_version: Count = Field(description="anti-rollback floor; never below the device's")
    sha256: Digest
    length: int = Field(ge=0, le=MAX_ARTIFACT_LENGTH)
    media_type: str = Field(min_length=1, max_length=128)


class Constraints(WireModel):
    min_firmware_version: str | None = None
    required_ops: tuple[str, ...] = ()
    ram_bytes: Count | None = Field(default=None, description="declared peak RAM need")
    flash_bytes: Count | None = Field(default=None, description="declared flash need")


class ReleaseManifest(WireModel):
    type: Literal["release"] = "release"
    name: Name
    version: str = Field(min_length=1, max_length=64)
    device_class: Name
    created: Timestamp
    components: tuple[Component, ...] = Field(min_length=1, max_length=16)
    constraints: Constraints = Constraints()

    @model_validator(mode="after")
    def _one_of_each_kind(self) -> Self:
        kinds = [c.kind for c in self.components]
        if len(kinds) != len(set(kinds)):
            raise ValueError("a release carries at most one component of each kind")
        return self

    def component(self, kind: ComponentKind) -> Component | None:
        return next((c for c in self.components if c.kind == kind), None)
