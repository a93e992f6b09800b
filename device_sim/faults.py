"""Fault knobs of a simulated device, all driven by an injected, seeded RNG."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, fields

__all__ = ["FAULT_NAMES", "Faults", "LinkFault", "in_share"]


@dataclass(frozen=True)
class Faults:
    """Probabilities in [0, 1]; the default device is healthy.

    - ``corrupt_download``: after an artifact is saved, flip one of its bytes (the
      verifying step then refuses it with ``artifact_digest_mismatch``);
    - ``power_loss_during_install``: the process stops halfway through writing the
      inactive slot (a restart finds the device on its old slot and retries);
    - ``flaky_link``: per HTTP attempt, drop the connection after a random number of
      bytes (the fetcher resumes with ``Range``);
    - ``fail_boot_probability``: the new image does not boot (``rolled_back``,
      ``boot_failed``);
    - ``health_check_failure``: the new image boots but fails its health check
      (``rolled_back``, ``health_check_failed``);
    - ``fail_boot_share``: a bad release: this share of devices, the same ones on every
      run (``in_share``: sha256 of device id and release digest), cannot boot it
      (``rolled_back``, ``boot_failed``), so a canary wave sees a stable failure rate;
      a director ``rollback`` to a release the device ran before is not affected.
    """

    corrupt_download: float = 0.0
    power_loss_during_install: float = 0.0
    flaky_link: float = 0.0
    fail_boot_probability: float = 0.0
    health_check_failure: float = 0.0
    fail_boot_share: float = 0.0

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {spec.name} must be a probability in [0, 1], got {value}")

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Faults:
        """``["flaky-link=0.3", "corrupt-download"]`` → Faults (a bare name means 1.0)."""
        values: dict[str, float] = {}
        for spec in specs:
            name, _, raw = spec.partition("=")
            attribute = FAULT_NAMES.get(name.strip())
            if attribute is None:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
            try:
                values[attribute] = float(raw) if raw else 1.0
            except ValueError as exc:
                raise ValueError(f"fault {name}: {raw!r} is not a number") from exc
        return cls(**values)


FAULT_NAMES = {
    "corrupt-download": "corrupt_download",
    "power-loss": "power_loss_during_install",
    "flaky-link": "flaky_link",
    "fail-boot": "fail_boot_probability",
    "health-check": "health_check_failure",
    "fail-boot-share": "fail_boot_share",
}


def in_share(share: float, device_id: str, release_digest: str) -> bool:
    """Whether this device is in the given share of the fleet for this release."""
    if share <= 0.0:
        return False
    digest = hashlib.sha256(f"{device_id}\x00{release_digest}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


@dataclass
class LinkFault:
    """Decides, per HTTP attempt, whether and where the simulated link drops."""

    probability: float
    rng: random.Random

    def cut_after(self, remaining: int) -> int | None:
        """Bytes to receive before the drop, or None to let the attempt through."""
        if remaining < 2 or self.rng.random() >= self.probability:
            return None
        return self.rng.randrange(1, remaining)
