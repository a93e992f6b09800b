"""Which devices may be sent a release: the firmware each reports against its minimum.

A release's signed ``min_firmware_version`` is about each device, not its class, so the
server checks it against the firmware version a device last reported (the ``firmware``
entry of its status components) by SemVer precedence, the rule the device applies
itself (``signer.constraints``). A device that has never reported a firmware version
cannot be shown to meet a minimum.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleet.domain.records import Device
from signer.constraints import firmware_meets

__all__ = ["below_minimum_firmware", "running_firmware"]


def running_firmware(device: Device) -> str | None:
    """The firmware version the device last reported running, if it ever did."""
    return next((c.version for c in device.components if c.kind == "firmware"), None)


def below_minimum_firmware(devices: Iterable[Device], minimum: str | None) -> dict[str, str | None]:
    """Each device whose firmware does not meet ``minimum``, with the version it runs."""
    if minimum is None:
        return {}
    found = {}
    for device in devices:
        version = running_firmware(device)
        if not firmware_meets(version, minimum):
            found[device.id] = version
    return found
