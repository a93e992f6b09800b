"""Does a release fit its device class? Pure checks, every violation reported at once.

A release is refused when its signed constraints ask for more RAM, flash or operators
than the device class (or its own firmware's resolver) offers, when its model needs
operators the firmware's op resolver lacks (or the device class does not support), when
tensor arena + firmware RAM exceed the class's RAM, when firmware + model + thresholds
exceed its flash, or when the model's input/output tensors differ from the contract the
firmware declares. Each violation is a value with a stable ``code`` and a message that
names the numbers and operators.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol

from fleet.domain.model_card import ArenaEstimate, ModelCard, TensorSpec
from signer.constraints import firmware_meets

__all__ = [
    "DeclaredFlashExceeded",
    "DeclaredNeeds",
    "DeclaredRamExceeded",
    "FirmwareBelowMinimum",
    "FirmwareProfile",
    "FlashExceeded",
    "MissingOps",
    "RamExceeded",
    "RequiredOpsUnavailable",
    "TensorContract",
    "TensorContractMismatch",
    "UnsupportedOps",
    "Violation",
    "ViolationCode",
    "check_constraints",
    "check_release",
]


class ViolationCode(StrEnum):
    MISSING_OPS = "missing_ops"
    UNSUPPORTED_OPS = "unsupported_ops"
    RAM_EXCEEDED = "ram_exceeded"
    FLASH_EXCEEDED = "flash_exceeded"
    TENSOR_CONTRACT = "tensor_contract"
    DECLARED_RAM_EXCEEDED = "declared_ram_exceeded"
    DECLARED_FLASH_EXCEEDED = "declared_flash_exceeded"
    REQUIRED_OPS_UNAVAILABLE = "required_ops_unavailable"
    FIRMWARE_BELOW_MINIMUM = "firmware_below_minimum"


class DeviceClassBudget(Protocol):
    """What a device class offers; ``fleet.domain.records.DeviceClass`` is one."""

    @property
    def name(self) -> str: ...
    @property
    def ram_bytes(self) -> int: ...
    @property
    def flash_bytes(self) -> int: ...
    @property
    def supported_ops(self) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class TensorContract:
    """A tensor as the firmware feeds or reads it; ``None`` fields are not checked."""

    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None


@dataclass(frozen=True, slots=True)
class FirmwareProfile:
    """What a firmware image declares: its op resolver, static RAM, and image size."""

    version: str
    builtin_ops: frozenset[str]
    custom_ops: frozenset[str]
    ram_bytes: int  # .data + .bss + stacks + heap: everything but the tensor arena
    image_bytes: int
    inputs: tuple[TensorContract, ...] | None = None
    outputs: tuple[TensorContract, ...] | None = None


class Violation(ABC):
    code: ClassVar[ViolationCode]

    @property
    @abstractmethod
    def message(self) -> str: ...


@dataclass(frozen=True, slots=True)
class MissingOps(Violation):
    code: ClassVar[ViolationCode] = ViolationCode.MISSING_OPS
    firmware_version: str
    ops: tuple[str, ...]

    @property
    def message(self) -> str:
        return (
            f"the model needs {len(self.ops)} op(s) that firmware {self.firmware_version}'s "
            f"resolver lacks: {', '.join(self.ops)}"
        )


@dataclass(frozen=True, slots=True)
class UnsupportedOps(Violation):
    code: ClassVar[ViolationCode] = ViolationCode.UNSUPPORTED_OPS
    device_class: str
    ops: tuple[str, ...]

    @property
    def message(self) -> str:
        return (
            f"the model needs {len(self.ops)} op(s) that device class {self.device_class!r} "
            f"does not support: {', '.join(self.ops)}"
        )


@dataclass(frozen=True, slots=True)
class RamExceeded(Violation):
    code: ClassVar[ViolationCode] = ViolationCode.RAM_EXCEEDED
    device_class: str
    arena: ArenaEstimate
    firmware_ram: int
    class_ram: int

    @property
    def message(self) -> str:
        arena = self.arena
        need = arena.total + self.firmware_ram
        return (
            f"RAM: tensor arena {arena.total:,} B (activations {arena.head:,} B or Prepare "
            f"temporaries {arena.prepare_peak:,} B, + persistent {arena.tail_margin:,} B) + "
            f"firmware {self.firmware_ram:,} B = {need:,} B exceeds device class "
            f"{self.device_class!r}'s {self.class_ram:,} B by {need - self.class_ram:,} B"
        )


@dataclass(frozen=True, slots=True)
class FlashExceeded(Violation):
    code: ClassVar[ViolationCode] = ViolationCode.FLASH_EXCEEDED
    device_class: str
    firmware_bytes: int
    model_bytes: int
    thresholds_bytes: int
    class_flash: int

    @property
    def message(self) -> str:
        need = self.firmware_bytes + self.model_bytes + self.thresholds_bytes
        return (
            f"flash: firmware {self.firmware_bytes:,} B + model {self.model_bytes:,} B + "
            f"thresholds {self.thresholds_bytes:,} B = {need:,} B exceeds device class "
            f"{self.device_class!r}'s {self.class_flash:,} B by {need - self.class_flash:,} B"
        )


@dataclass(frozen=True, slots=True)
class TensorContractMismatch(Violation):
    code: ClassVar[ViolationCode] = ViolationCode.TENSOR_CONTRACT
    tensor: str  # "input 0", "outputs"
    field: str
    expected: str
    actual: str

    @property
    def message(self) -> str:
        return (
            f"{self.tensor} {self.field}: the firmware expects {self.expected}, "
            f"the model has {self.actual}"
        )


@dataclass(frozen=True, slots=True)
class DeclaredRamExceeded(Violation):
    code: ClassVar[ViolationCode] = ViolationCode.DECLARED_RAM_EXCEEDED
    device_class: str
    declared: int
    class_ram: int

    @property
    def message(self) -> str:
        return (
            f"constraints: the release declares {self.declared:,} B of RAM, device class "
            f"{self.device_class!r} has {self.class_ram:,} B"
        )


@dataclass(frozen=True, slots=True)
class DeclaredFlashExceeded(Violation):
    code: ClassVar[ViolationCode] = ViolationCode.DECLARED_FLASH_EXCEEDED
    device_class: str
    declared: int
    class_flash: int

    @property
    def message(self) -> str:
        return (
            f"constraints: the release declares {self.declared:,} B of flash, device class "
            f"{self.device_class!r} has {self.class_flash:,} B"
        )


@dataclass(frozen=True, slots=True)
class RequiredOpsUnavailable(Violation):
    code: ClassVar[ViolationCode] = ViolationCode.REQUIRED_OPS_UNAVAILABLE
    offered_by: str  # "device class 'x'" or "firmware 2.1.0's resolver"
    ops: tuple[str, ...]

    @property
    def message(self) -> str:
        return (
            f"constraints: the release requires {len(self.ops)} op(s) that {self.offered_by} "
            f"lacks: {', '.join(self.ops)}"
        )


@dataclass(frozen=True, slots=True)
class FirmwareBelowMinimum(Violation):
    code: ClassVar[ViolationCode] = ViolationCode.FIRMWARE_BELOW_MINIMUM
    shipped: str
    minimum: str

    @property
    def message(self) -> str:
        return (
            f"constraints: the release ships firmware {self.shipped}, below its own "
            f"min_firmware_version {self.minimum} (or not SemVer): a device that installed "
            "it would refuse the release"
        )


@dataclass(frozen=True, slots=True)
class DeclaredNeeds:
    """A release's signed ``Constraints``, as far as the server can judge them, and the
    version of the firmware the release itself ships (``None`` without one)."""

    required_ops: tuple[str, ...] = ()
    ram_bytes: int | None = None
    flash_bytes: int | None = None
    min_firmware_version: str | None = None
    shipped_firmware: str | None = None


def check_constraints(
    device_class: DeviceClassBudget, firmware: FirmwareProfile | None, needs: DeclaredNeeds
) -> tuple[Violation, ...]:
    """Every declared need the device class (or the release's own firmware) cannot meet.

    ``min_firmware_version`` is about each device, not its class (assignment checks it),
    but a release shipping firmware below its own minimum could never be re-accepted by a
    device that installed it, so that is refused here.
    """
    found: list[Violation] = []
    minimum, shipped = needs.min_firmware_version, needs.shipped_firmware
    if minimum is not None and shipped is not None and not firmware_meets(shipped, minimum):
        found.append(FirmwareBelowMinimum(shipped, minimum))
    if needs.ram_bytes is not None and needs.ram_bytes > device_class.ram_bytes:
        found.append(
            DeclaredRamExceeded(device_class.name, needs.ram_bytes, device_class.ram_bytes)
        )
    if needs.flash_bytes is not None and needs.flash_bytes > device_class.flash_bytes:
        found.append(
            DeclaredFlashExceeded(device_class.name, needs.flash_bytes, device_class.flash_bytes)
        )
    if device_class.supported_ops:
        lacking = tuple(op for op in needs.required_ops if op not in device_class.supported_ops)
        if lacking:
            found.append(RequiredOpsUnavailable(f"device class {device_class.name!r}", lacking))
    if firmware is not None:
        offered = firmware.builtin_ops | firmware.custom_ops
        lacking = tuple(op for op in needs.required_ops if op not in offered)
        if lacking:
            found.append(RequiredOpsUnavailable(f"firmware {firmware.version}'s resolver", lacking))
    return tuple(found)


def check_release(
    device_class: DeviceClassBudget,
    firmware: FirmwareProfile,
    model: ModelCard,
    *,
    thresholds_bytes: int,
) -> tuple[Violation, ...]:
    """Every reason this firmware + model + thresholds set cannot ship to the class."""
    return (
        *_op_violations(device_class, firmware, model),
        *_budget_violations(device_class, firmware, model, thresholds_bytes),
        *_contract_violations("input", firmware.inputs, model.inputs),
        *_contract_violations("output", firmware.outputs, model.outputs),
    )


def _op_violations(
    device_class: DeviceClassBudget, firmware: FirmwareProfile, model: ModelCard
) -> list[Violation]:
    missing = [op for op in model.builtin_ops if op not in firmware.builtin_ops] + [
        f"custom {op!r}" for op in model.custom_ops if op not in firmware.custom_ops
    ]
    found: list[Violation] = []
    if missing:
        found.append(MissingOps(firmware_version=firmware.version, ops=tuple(missing)))
    # An empty supported_ops means the class declares no op list: the resolver decides.
    if device_class.supported_ops:
        needed = (*model.builtin_ops, *model.custom_ops)
        unsupported = tuple(op for op in needed if op not in device_class.supported_ops)
        if unsupported:
            found.append(UnsupportedOps(device_class=device_class.name, ops=unsupported))
    return found


def _budget_violations(
    device_class: DeviceClassBudget,
    firmware: FirmwareProfile,
    model: ModelCard,
    thresholds_bytes: int,
) -> list[Violation]:
    found: list[Violation] = []
    if model.arena.total + firmware.ram_bytes > device_class.ram_bytes:
        found.append(
            RamExceeded(
                device_class=device_class.name,
                arena=model.arena,
                firmware_ram=firmware.ram_bytes,
                class_ram=device_class.ram_bytes,
            )
        )
    if firmware.image_bytes + model.flash_bytes + thresholds_bytes > device_class.flash_bytes:
        found.append(
            FlashExceeded(
                device_class=device_class.name,
                firmware_bytes=firmware.image_bytes,
                model_bytes=model.flash_bytes,
                thresholds_bytes=thresholds_bytes,
                class_flash=device_class.flash_bytes,
            )
        )
    return found


def _contract_violations(
    role: str, expected: Sequence[TensorContract] | None, actual: Sequence[TensorSpec]
) -> list[Violation]:
    if expected is None:
        return []
    if len(expected) != len(actual):
        return [
            TensorContractMismatch(
                tensor=f"{role}s",
                field="count",
                expected=str(len(expected)),
                actual=str(len(actual)),
            )
        ]
    found: list[Violation] = []
    for index, (want, have) in enumerate(zip(expected, actual, strict=True)):
        for field, wanted, had in _differences(want, have):
            found.append(
                TensorContractMismatch(
                    tensor=f"{role} {index} ({have.name!r})",
                    field=field,
                    expected=wanted,
                    actual=had,
                )
            )
    return found


def _differences(want: TensorContract, have: TensorSpec) -> list[tuple[str, str, str]]:
    diffs = []
    if want.shape != have.shape:
        diffs.append(("shape", str(list(want.shape)), str(list(have.shape))))
    if want.dtype != have.dtype:
        diffs.append(("dtype", want.dtype, have.dtype))
    quant = have.quantization
    scales = quant.scale if quant else ()
    zero_points = quant.zero_point if quant else ()
    if want.scale is not None and not (
        len(scales) == 1 and math.isclose(scales[0], want.scale, rel_tol=1e-6)
    ):
        diffs.append(("scale", repr(want.scale), _listing(scales)))
    if want.zero_point is not None and tuple(zero_points) != (want.zero_point,):
        diffs.append(("zero_point", str(want.zero_point), _listing(zero_points)))
    return diffs


def _listing(values: Sequence[float] | Sequence[int]) -> str:
    if not values:
        return "no quantization"
    return repr(values[0]) if len(values) == 1 else f"{len(values)} per-axis values"
