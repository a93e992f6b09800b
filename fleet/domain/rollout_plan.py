"""What a staged rollout is asked to do: waves, gates, targeting and stable cohorts.

Pure values and functions (no IO, no clock): ``fleet.domain.rollout`` runs the state
machine over them. A plan is a list of cumulative waves; a device's place in the order
is its cohort value ``cohort(rollout_id, device_id)`` in [0, 1), so the devices of wave
k are a prefix of those of wave k + 1 and a device never leaves a wave it entered.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Any, Protocol

__all__ = [
    "FailurePolicy",
    "Gate",
    "GateVerdict",
    "Gates",
    "Plan",
    "PlanError",
    "Target",
    "Wave",
    "WaveObservations",
    "cohort",
    "cohort_order",
    "plan_from_json",
    "plan_to_json",
]


class PlanError(ValueError):
    """A plan, wave or gate that cannot be run; the message says which and why."""

    code = "invalid_plan"


class FailurePolicy(StrEnum):
    PAUSE = "pause"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class WaveObservations:
    """What the devices directed so far (waves 0..k, cumulative) have reported."""

    directed: int
    healthy: int = 0
    failed: int = 0
    rolled_back: int = 0
    offline: int = 0

    @property
    def reports(self) -> int:
        """Devices that finished the update one way or the other."""
        return self.healthy + self.failed + self.rolled_back

    def share(self, count: int, of: int) -> float:
        return count / of if of else 0.0


@dataclass(frozen=True)
class GateVerdict:
    gate: str
    reason: str
    # True: the gate cannot judge yet (e.g. no telemetry so far). The wave neither fails
    # nor advances; the gate is asked again at the next tick.
    waiting: bool = False


class Gate(Protocol):
    """An extension point (e.g. drift gates): judge a wave's observations.

    Return None to let the wave pass, a verdict saying why it must stop, or a
    ``waiting`` verdict while the gate has too little to judge by.
    """

    @property
    def name(self) -> str: ...

    def judge(self, observations: WaveObservations) -> GateVerdict | None: ...


def _rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise PlanError(f"{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class Gates:
    """Health gates a wave must pass before the next one starts.

    Rates are shares of the devices that reported (``min_reports`` of them, or all the
    wave's devices if fewer); the offline share is of the devices directed.
    """

    max_failure_rate: float = 0.0
    max_rollback_rate: float = 0.0
    max_offline_share: float = 1.0
    min_reports: int = 1
    extra: tuple[Gate, ...] = ()

    def __post_init__(self) -> None:
        _rate("max_failure_rate", self.max_failure_rate)
        _rate("max_rollback_rate", self.max_rollback_rate)
        _rate("max_offline_share", self.max_offline_share)
        if self.min_reports < 1:
            raise PlanError(f"min_reports must be at least 1, got {self.min_reports}")

    def enough_reports(self, observations: WaveObservations) -> bool:
        return observations.reports >= min(self.min_reports, observations.directed)

    def judge(self, observations: WaveObservations) -> GateVerdict | None:
        """The first gate that fails, else the first still waiting, else None. Judges
        only with enough reports."""
        if not self.enough_reports(observations):
            return None
        reports = observations.reports
        failure = observations.share(observations.failed, reports)
        if failure > self.max_failure_rate:
            return GateVerdict(
                "max_failure_rate", f"failure rate {failure:.3f} > {self.max_failure_rate}"
            )
        rollback = observations.share(observations.rolled_back, reports)
        if rollback > self.max_rollback_rate:
            return GateVerdict(
                "max_rollback_rate", f"rollback rate {rollback:.3f} > {self.max_rollback_rate}"
            )
        offline = observations.share(observations.offline, observations.directed)
        if offline > self.max_offline_share:
            return GateVerdict(
                "max_offline_share", f"offline share {offline:.3f} > {self.max_offline_share}"
            )
        verdicts = [v for gate in self.extra if (v := gate.judge(observations)) is not None]
        failed = [v for v in verdicts if not v.waiting]
        ranked = failed or verdicts
        return ranked[0] if ranked else None


@dataclass(frozen=True)
class Wave:
    """A cumulative step: ``percent`` of the population, or ``count`` devices."""

    percent: float | None = None
    count: int | None = None
    soak: timedelta = timedelta(0)
    gates: Gates = field(default_factory=Gates)

    def __post_init__(self) -> None:
        if (self.percent is None) == (self.count is None):
            raise PlanError("a wave needs exactly one of percent or count")
        if self.percent is not None and not 0.0 < self.percent <= 100.0:
            raise PlanError(f"a wave's percent must be in (0, 100], got {self.percent}")
        if self.count is not None and self.count < 1:
            raise PlanError(f"a wave's count must be at least 1, got {self.count}")
        if self.soak < timedelta(0):
            raise PlanError("a wave's soak time cannot be negative")

    def cut(self, population: int) -> int:
        """How many devices (in cohort order) this wave includes, at least one."""
        if self.count is not None:
            wanted = self.count
        else:
            assert self.percent is not None
            wanted = math.ceil(population * self.percent / 100.0 - 1e-9)
        return min(population, max(1, wanted))


@dataclass(frozen=True)
class Plan:
    waves: tuple[Wave, ...]
    on_failure: FailurePolicy = FailurePolicy.ROLLBACK
    # Whether the server's drift gate (telemetry) judges the waves, where it can: an
    # operator turns it off for a fix that must ship while the field drifts.
    drift_gate: bool = True

    def __post_init__(self) -> None:
        if not self.waves:
            raise PlanError("a plan needs at least one wave")
        percents = [w.percent for w in self.waves if w.percent is not None]
        counts = [w.count for w in self.waves if w.count is not None]
        if percents and counts:
            raise PlanError("a plan's waves are all percents or all counts")
        sizes = percents or counts
        if any(b < a for a, b in pairwise(sizes)):
            raise PlanError("waves are cumulative: each must be at least the one before")

    def cuts(self, population: int) -> tuple[int, ...]:
        """Devices in each wave; the last wave takes every device (waves only grow)."""
        cuts = [wave.cut(population) for wave in self.waves]
        cuts[-1] = population if self.waves[-1].percent == 100.0 else cuts[-1]
        for index in range(1, len(cuts)):
            cuts[index] = max(cuts[index], cuts[index - 1])
        return tuple(cuts)


@dataclass(frozen=True)
class Target:
    """Which devices a rollout is for: all of a class, with every tag, on a release."""

    device_class: str
    tags: frozenset[str] = frozenset()
    current_release: str | None = None

    def matches(self, device_class: str, tags: Iterable[str], running: str | None) -> bool:
        return (
            device_class == self.device_class
            and self.tags <= frozenset(tags)
            and (self.current_release is None or running == self.current_release)
        )


def cohort(rollout_id: str, device_id: str) -> float:
    """A device's stable place in a rollout, in [0, 1): sha256 of both ids."""
    digest = hashlib.sha256(f"{rollout_id}\x00{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def cohort_order(rollout_id: str, device_ids: Sequence[str]) -> list[str]:
    """Devices in the order waves take them (ties, vanishingly rare, by id)."""
    return sorted(device_ids, key=lambda d: (cohort(rollout_id, d), d))


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "on_failure": plan.on_failure.value,
        "drift_gate": plan.drift_gate,
        "waves": [
            {
                "percent": w.percent,
                "count": w.count,
                "soak_seconds": w.soak.total_seconds(),
                "gates": {
                    "max_failure_rate": w.gates.max_failure_rate,
                    "max_rollback_rate": w.gates.max_rollback_rate,
                    "max_offline_share": w.gates.max_offline_share,
                    "min_reports": w.gates.min_reports,
                },
            }
            for w in plan.waves
        ],
    }


def plan_from_json(data: dict[str, Any]) -> Plan:
    return Plan(
        waves=tuple(
            Wave(
                percent=w["percent"],
                count=w["count"],
                soak=timedelta(seconds=w["soak_seconds"]),
                gates=Gates(**w["gates"]),
            )
            for w in data["waves"]
        ),
        on_failure=FailurePolicy(data["on_failure"]),
        drift_gate=data.get("drift_gate", True),  # plans stored before it existed
    )
