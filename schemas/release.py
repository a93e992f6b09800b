"""Release manifests: one consistent, offline-signed set of components for a device class."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from schemas.common import Count, Digest, Name, SafeInt, WireModel
from schemas.timestamps import Timestamp

__all__ = [
    "SEMVER_PATTERN",
    "Component",
    "ComponentKind",
    "Constraints",
    "FirmwareDeclaration",
    "ReleaseManifest",
    "TensorDeclaration",
]

# The largest artifact a release may declare (a firmware image for a big MCU is a few MiB).
MAX_ARTIFACT_LENGTH = 64 * 1024 * 1024


class ComponentKind(StrEnum):
    FIRMWARE = "firmware"
    MODEL = "model"
    THRESHOLDS = "thresholds"


# A TFLite BuiltinOperator name (``CONV_2D``) or a custom op's ``custom_code``.
OpName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")]
OpList = Annotated[tuple[OpName, ...], Field(max_length=256)]


class TensorDeclaration(WireModel):
    """A model input or output tensor as the firmware feeds or reads it."""

    shape: tuple[Annotated[int, Field(ge=1, le=2**31 - 1)], ...] = Field(max_length=8)
    dtype: str = Field(
        pattern=r"^[A-Z0-9_]{1,16}$", description="TFLite TensorType name, e.g. INT8"
    )
    scale: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = None
    zero_point: SafeInt | None = None


class FirmwareDeclaration(WireModel):
    """What a firmware image offers a model: its op resolver, its RAM, its tensor contract.

    The server refuses a release whose model needs more (docs/models.md).
    """

    builtin_ops: OpList = Field(description="BuiltinOperator names the op resolver registers")
    custom_ops: OpList = ()
    ram_bytes: Count = Field(description="static RAM besides the tensor arena")
    inputs: tuple[TensorDeclaration, ...] | None = Field(default=None, max_length=16)
    outputs: tuple[TensorDeclaration, ...] | None = Field(default=None, max_length=16)


class Component(WireModel):
    kind: ComponentKind
    name: Name
    version: str = Field(min_length=1, max_length=64)
    security_version: Count = Field(description="anti-rollback floor; never below the device's")
    sha256: Digest
    length: int = Field(ge=0, le=MAX_ARTIFACT_LENGTH)
    media_type: str = Field(min_length=1, max_length=128)
    firmware: FirmwareDeclaration | None = Field(
        default=None, description="only on the firmware component; omitted when absent"
    )

    @model_validator(mode="after")
    def _firmware_on_firmware(self) -> Self:
        if self.firmware is not None and self.kind is not ComponentKind.FIRMWARE:
            raise ValueError("only a firmware component carries a firmware declaration")
        return self

    # Absent, not null: a release without a declaration keeps its exact bytes. Left
    # unannotated because pydantic would take a return annotation as the JSON Schema.
    @model_serializer(mode="wrap")
    def _omit_absent_declaration(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if isinstance(data, dict) and data.get("firmware") is None:
            data.pop("firmware", None)
        return data


# SemVer 2.0.0 (semver.org's own expression, without named groups): precedence between
# two of these is what ``min_firmware_version`` is compared by, on the server and devices.
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
SemVer = Annotated[str, StringConstraints(pattern=SEMVER_PATTERN, max_length=64)]


class Constraints(WireModel):
    """What a device must offer before it downloads the release (docs/protocol.md §7.3).

    The server checks them against the device class at registration and against each
    device's reported firmware at assignment; the device checks them against itself.
    """

    min_firmware_version: SemVer | None = Field(
        default=None, description="the running firmware must be at least this (SemVer 2.0.0)"
    )
    required_ops: OpList = Field(default=(), description="ops the device's resolver must hold")
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
