"""Does a release fit its firmware and device class? Refuse it at registration.

The release's signed constraints are checked against the class (and its own firmware's
resolver) whether or not it carries a model (``check_constraints``). The model's card
comes from the blob store (``fleet.services.models``); the firmware's declaration from
the signed manifest (``Component.firmware``); the budgets from the device class.
``fleet.domain.compatibility.check_release`` judges, and every violation is reported at
once. What a release without a firmware declaration is held to (the flash
budget, the arena alone against the class's RAM, the class's op list) is described in
docs/models.md.
"""

from __future__ import annotations

from datetime import datetime

from fleet.domain.compatibility import (
    DeclaredNeeds,
    FirmwareProfile,
    TensorContract,
    check_constraints,
    check_release,
)
from fleet.domain.model_card import ModelCard
from fleet.domain.records import DeviceClass
from fleet.services.errors import ReleaseIncompatible
from fleet.services.models import ensure_model_card
from fleet.store import BlobStore, UnitOfWork
from schemas import Component, ComponentKind, ReleaseManifest, TensorDeclaration

__all__ = ["check_fit", "firmware_profile"]


def check_fit(
    uow: UnitOfWork,
    blobs: BlobStore,
    manifest: ReleaseManifest,
    device_class: DeviceClass,
    *,
    now: datetime,
) -> None:
    """Raise ReleaseIncompatible listing every violation, or ModelRefused for a bad model."""
    firmware = manifest.component(ComponentKind.FIRMWARE)
    constraints = manifest.constraints
    needs = DeclaredNeeds(
        required_ops=constraints.required_ops,
        ram_bytes=constraints.ram_bytes,
        flash_bytes=constraints.flash_bytes,
        min_firmware_version=constraints.min_firmware_version,
        shipped_firmware=None if firmware is None else firmware.version,
    )
    violations = check_constraints(device_class, declared_profile(firmware), needs)
    model = manifest.component(ComponentKind.MODEL)
    if model is not None:
        card = ensure_model_card(uow, blobs, model.sha256, now=now).card
        thresholds = manifest.component(ComponentKind.THRESHOLDS)
        violations += check_release(
            device_class,
            firmware_profile(firmware, card),
            card,
            thresholds_bytes=0 if thresholds is None else thresholds.length,
        )
    if violations:
        raise ReleaseIncompatible(
            f"release {manifest.name} {manifest.version} does not fit device class "
            f"{device_class.name!r}: " + "; ".join(v.message for v in violations),
            extra={
                "violations": [{"code": v.code.value, "message": v.message} for v in violations]
            },
        )


def firmware_profile(firmware: Component | None, card: ModelCard) -> FirmwareProfile:
    """The firmware as the model checks see it: its declaration, or what it must hold."""
    return declared_profile(firmware) or undeclared_profile(firmware, card)


def declared_profile(firmware: Component | None) -> FirmwareProfile | None:
    """The firmware's own declaration (resolver, RAM, tensors), if it carries one."""
    declared = None if firmware is None else firmware.firmware
    if firmware is None or declared is None:
        return None
    return FirmwareProfile(
        version=firmware.version,
        builtin_ops=frozenset(declared.builtin_ops),
        custom_ops=frozenset(declared.custom_ops),
        ram_bytes=declared.ram_bytes,
        image_bytes=firmware.length,
        inputs=_contracts(declared.inputs),
        outputs=_contracts(declared.outputs),
    )


def undeclared_profile(firmware: Component | None, card: ModelCard) -> FirmwareProfile:
    """Without a declaration the resolver is taken to hold the model's ops and the firmware
    to need no RAM besides the arena, so only what the server knows is checked."""
    return FirmwareProfile(
        version="(none)" if firmware is None else firmware.version,
        builtin_ops=frozenset(card.builtin_ops),
        custom_ops=frozenset(card.custom_ops),
        ram_bytes=0,
        image_bytes=0 if firmware is None else firmware.length,
    )


def _contracts(
    tensors: tuple[TensorDeclaration, ...] | None,
) -> tuple[TensorContract, ...] | None:
    if tensors is None:
        return None
    return tuple(
        TensorContract(shape=t.shape, dtype=t.dtype, scale=t.scale, zero_point=t.zero_point)
        for t in tensors
    )
