"""Does a release's model fit its firmware and device class? Refuse it at registration.

The model's card comes from the blob store (``fleet.services.models``); the firmware's
declaration from the signed manifest (``Component.firmware``); the budgets from the
device class. ``fleet.domain.compatibility.check_release`` judges, and every violation is
reported at once. What a release without a firmware declaration is held to (the flash
budget, the arena alone against the class's RAM, the class's op list) is described in
docs/models.md.
"""

from __future__ import annotations

from datetime import datetime

from fleet.domain.compatibility import FirmwareProfile, TensorContract, check_release
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
    model = manifest.component(ComponentKind.MODEL)
    if model is None:
        return
    card = ensure_model_card(uow, blobs, model.sha256, now=now).card
    thresholds = manifest.component(ComponentKind.THRESHOLDS)
    violations = check_release(
        device_class,
        firmware_profile(manifest.component(ComponentKind.FIRMWARE), card),
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
    """The firmware as the checks see it.

    Without a declaration the resolver is taken to hold the model's ops and the firmware
    to need no RAM besides the arena, so only what the server knows is checked.
    """
    declared = None if firmware is None else firmware.firmware
    version = "(none)" if firmware is None else firmware.version
    image_bytes = 0 if firmware is None else firmware.length
    if declared is None:
        return FirmwareProfile(
            version=version,
            builtin_ops=frozenset(card.builtin_ops),
            custom_ops=frozenset(card.custom_ops),
            ram_bytes=0,
            image_bytes=image_bytes,
        )
    return FirmwareProfile(
        version=version,
        builtin_ops=frozenset(declared.builtin_ops),
        custom_ops=frozenset(declared.custom_ops),
        ram_bytes=declared.ram_bytes,
        image_bytes=image_bytes,
        inputs=_contracts(declared.inputs),
        outputs=_contracts(declared.outputs),
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
