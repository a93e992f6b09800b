"""Does a release's signed ``Constraints`` hold on this device? (docs/protocol.md §7.3)

A device checks them after the signatures and before it downloads a byte: a release that
cannot run here must not cost the radio or the inactive slot. Each field is checked
against what the device knows of itself; a device that does not declare its RAM, flash
or op resolver skips that field (the server has checked it against the device class at
registration), but every device knows the firmware it runs.

Firmware versions are SemVer 2.0.0 and compared by its precedence (``semver``): a
pre-release is below its release, build metadata is ignored. A running firmware whose
version is not SemVer cannot be shown to meet a minimum and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import semver

from schemas import ReleaseManifest
from signer.errors import FirmwareTooOld, FlashInsufficient, OpsUnsupported, RamInsufficient

__all__ = ["DeviceCapabilities", "check_constraints", "firmware_meets", "flash_need"]


@dataclass(frozen=True, slots=True)
class DeviceCapabilities:
    """What a device offers a release; ``None`` means the device does not declare it."""

    firmware_version: str | None = None
    ops: frozenset[str] | None = None
    ram_bytes: int | None = None
    flash_bytes: int | None = None


def firmware_meets(version: str | None, minimum: str) -> bool:
    """True if firmware ``version`` is at least ``minimum`` by SemVer precedence.

    An unknown or non-SemVer ``version`` never meets a minimum.
    """
    if version is None or not semver.Version.is_valid(version):
        return False
    return semver.Version.parse(version).compare(minimum) >= 0


def flash_need(release: ReleaseManifest) -> int:
    """The flash a release takes: its declared need, or its components' bytes if more."""
    return max(_component_bytes(release), release.constraints.flash_bytes or 0)


def check_constraints(release: ReleaseManifest, device: DeviceCapabilities) -> None:
    """Raise the first ``ConstraintUnmet`` refusal, checked in the documented order."""
    constraints = release.constraints
    minimum = constraints.min_firmware_version
    if minimum is not None and not firmware_meets(device.firmware_version, minimum):
        running = device.firmware_version or "unknown"
        raise FirmwareTooOld(
            f"the release needs firmware {minimum} or later; this device runs {running}"
        )
    if device.ops is not None:
        missing = [op for op in constraints.required_ops if op not in device.ops]
        if missing:
            raise OpsUnsupported(
                f"the release needs op(s) this device's resolver lacks: {', '.join(missing)}"
            )
    if device.ram_bytes is not None and (constraints.ram_bytes or 0) > device.ram_bytes:
        raise RamInsufficient(
            f"the release declares {constraints.ram_bytes:,} B of RAM; "
            f"this device has {device.ram_bytes:,} B"
        )
    need = flash_need(release)
    if device.flash_bytes is not None and need > device.flash_bytes:
        raise FlashInsufficient(
            f"the release takes {need:,} B of flash (declared "
            f"{constraints.flash_bytes or 0:,} B, components {_component_bytes(release):,} B); "
            f"this device's slot holds {device.flash_bytes:,} B"
        )


def _component_bytes(release: ReleaseManifest) -> int:
    return sum(component.length for component in release.components)
