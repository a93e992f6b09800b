"""Fault knobs of a simulated device, all driven by an injected, seeded RNG."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, fields

__all__ = ["FAULT_NAMES", "Faults", "LinkFault"]


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
      (``rolled_back``, ``health_check_failed``).
    """

    corrupt_download: float = 0.0
    power_loss_during_install: float = 0.0
    flaky_link: float = 0.0
    fail_boot_probability: float = 0.0
    health_check_failure: float = 0.0

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
}


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
