"""The staged rollout state machine (docs/architecture.md §5): pure, time injected, events out.

A ``Rollout`` is an immutable value. Operator actions (``approve``, ``pause``,
``resume``, ``abort``, ``rollback``) and the engine's ``tick`` (time passed, devices
reported) each return the new value and the events that describe the transition; the
caller persists both and acts on the events (``WAVE_STARTED``: direct the wave's new
devices; ``ROLLED_BACK``: direct every directed device back to its previous release)::

    created ──approve──▶ running ──(last wave soaked, gates pass)──▶ completed
                          │  ▲
          pause/gate fail │  │ resume
                          ▼  │
                         paused
    any non-terminal ──abort──▶ aborted
    any non-terminal ──rollback / gate fail with policy rollback──▶ rolled_back

``completed``, ``aborted`` and ``rolled_back`` are terminal: nothing changes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from fleet.domain.rollout_plan import (
    FailurePolicy,
    Plan,
    Target,
    WaveObservations,
)

__all__ = [
    "TERMINAL",
    "EventKind",
    "InvalidTransition",
    "Member",
    "Rollout",
    "RolloutEvent",
    "RolloutStatus",
    "below_floor",
    "rollback_targets",
    "unclaimed",
]


class RolloutStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"


TERMINAL = frozenset({RolloutStatus.COMPLETED, RolloutStatus.ABORTED, RolloutStatus.ROLLED_BACK})


class EventKind(StrEnum):
    CREATED = "created"
    APPROVED = "approved"
    WAVE_STARTED = "wave_started"
    GATE_FAILED = "gate_failed"
    PAUSED = "paused"
    RESUMED = "resumed"
    COMPLETED = "completed"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"


class InvalidTransition(RuntimeError):
    """An action the rollout's state does not allow (e.g. resume a completed rollout)."""

    code = "invalid_transition"

    def __init__(self, *, action: str, status: RolloutStatus) -> None:
        super().__init__(f"cannot {action} a rollout that is {status.value}")
        self.action = action
        self.status = status


@dataclass(frozen=True)
class RolloutEvent:
    kind: EventKind
    at: datetime
    status: RolloutStatus
    wave: int | None = None
    actor: str = "engine"
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Member:
    """A device of a rollout, with the release it ran before (what rollback restores)."""

    device_id: str
    rank: int  # place in cohort order; wave k holds ranks below cuts[k]
    previous_release: str | None
    wave: int | None = None  # the wave that directed it, once directed


@dataclass(frozen=True)
class Rollout:
    id: str
    release_digest: str
    plan: Plan
    target: Target
    population: int
    created_at: datetime
    status: RolloutStatus = RolloutStatus.CREATED
    wave: int = -1  # index of the current wave; -1 before approval
    wave_started_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def cuts(self) -> tuple[int, ...]:
        return self.plan.cuts(self.population)

    def directed_count(self) -> int:
        """Devices the waves started so far include (grows, never shrinks)."""
        return 0 if self.wave < 0 else self.cuts[self.wave]

    # -- operator actions ----------------------------------------------------------------

    def created(self, *, actor: str) -> RolloutEvent:
        return RolloutEvent(
            EventKind.CREATED,
            self.created_at,
            self.status,
            actor=actor,
            detail={"population": self.population, "cuts": list(self.cuts)},
        )

    def approve(self, *, now: datetime, actor: str) -> tuple[Rollout, list[RolloutEvent]]:
        self._require("approve", {RolloutStatus.CREATED})
        approved = replace(self, status=RolloutStatus.RUNNING)
        events = [RolloutEvent(EventKind.APPROVED, now, approved.status, actor=actor)]
        started, more = approved._start_wave(0, now=now, actor=actor)
        return started, events + more

    def pause(
        self, *, now: datetime, actor: str, reason: str = "operator"
    ) -> tuple[Rollout, list[RolloutEvent]]:
        self._require("pause", {RolloutStatus.RUNNING})
        paused = replace(self, status=RolloutStatus.PAUSED)
        event = RolloutEvent(
            EventKind.PAUSED, now, paused.status, self.wave, actor, {"reason": reason}
        )
        return paused, [event]

    def resume(self, *, now: datetime, actor: str) -> tuple[Rollout, list[RolloutEvent]]:
        """Back to running; the current wave soaks again from now."""
        self._require("resume", {RolloutStatus.PAUSED})
        resumed = replace(self, status=RolloutStatus.RUNNING, wave_started_at=now)
        return resumed, [RolloutEvent(EventKind.RESUMED, now, resumed.status, self.wave, actor)]

    def abort(
        self, *, now: datetime, actor: str, reason: str = "operator"
    ) -> tuple[Rollout, list[RolloutEvent]]:
        """Stop directing devices; those already updated keep the new release."""
        self._require("abort", _ACTIVE)
        aborted = replace(self, status=RolloutStatus.ABORTED)
        event = RolloutEvent(
            EventKind.ABORTED, now, aborted.status, self.wave, actor, {"reason": reason}
        )
        return aborted, [event]

    def rollback(
        self, *, now: datetime, actor: str, reason: str = "operator"
    ) -> tuple[Rollout, list[RolloutEvent]]:
        """Stop, and send every directed device back to its previous release."""
        self._require("rollback", _ACTIVE)
        rolled = replace(self, status=RolloutStatus.ROLLED_BACK)
        event = RolloutEvent(
            EventKind.ROLLED_BACK, now, rolled.status, self.wave, actor, {"reason": reason}
        )
        return rolled, [event]

    # -- the engine's clock and the devices' reports -------------------------------------

    def tick(
        self, observations: WaveObservations, *, now: datetime
    ) -> tuple[Rollout, list[RolloutEvent]]:
        """Judge the current wave; advance, finish, pause or roll back. Idle otherwise."""
        if self.status is not RolloutStatus.RUNNING:
            return self, []
        wave = self.plan.waves[self.wave]
        verdict = wave.gates.judge(observations)
        if verdict is not None and not verdict.waiting:
            failed = RolloutEvent(
                EventKind.GATE_FAILED,
                now,
                self.status,
                self.wave,
                detail={
                    "gate": verdict.gate,
                    "reason": verdict.reason,
                    "observations": _observed(observations),
                },
            )
            reason = f"gate {verdict.gate}: {verdict.reason}"
            if self.plan.on_failure is FailurePolicy.PAUSE:
                after, events = self.pause(now=now, actor="engine", reason=reason)
            else:
                after, events = self.rollback(now=now, actor="engine", reason=reason)
            return after, [failed, *events]
        assert self.wave_started_at is not None
        soaked = now - self.wave_started_at >= wave.soak
        if not soaked or not wave.gates.enough_reports(observations) or verdict is not None:
            return self, []  # a waiting gate holds the wave without failing it
        if self.wave + 1 == len(self.plan.waves):
            done = replace(self, status=RolloutStatus.COMPLETED)
            event = RolloutEvent(
                EventKind.COMPLETED,
                now,
                done.status,
                self.wave,
                detail={"observations": _observed(observations)},
            )
            return done, [event]
        return self._start_wave(self.wave + 1, now=now, actor="engine")

    # -- helpers ------------------------------------------------------------------------

    def _start_wave(
        self, index: int, *, now: datetime, actor: str
    ) -> tuple[Rollout, list[RolloutEvent]]:
        started = replace(self, wave=index, wave_started_at=now)
        cut = started.cuts[index]
        event = RolloutEvent(
            EventKind.WAVE_STARTED,
            now,
            started.status,
            index,
            actor,
            {"cut": cut, "new": cut - self.directed_count()},
        )
        return started, [event]

    def _require(self, action: str, allowed: frozenset[RolloutStatus] | set[RolloutStatus]) -> None:
        if self.status not in allowed:
            raise InvalidTransition(action=action, status=self.status)


_ACTIVE = frozenset({RolloutStatus.CREATED, RolloutStatus.RUNNING, RolloutStatus.PAUSED})


def _observed(observations: WaveObservations) -> dict[str, int]:
    return {
        "directed": observations.directed,
        "healthy": observations.healthy,
        "failed": observations.failed,
        "rolled_back": observations.rolled_back,
        "offline": observations.offline,
    }


def rollback_targets(members: Sequence[Member], release_digest: str) -> list[tuple[str, str]]:
    """(device, release to return to) for each directed device that ran another release.

    A device with no previous release, or whose previous release is this one, has
    nothing to return to and is left out.
    """
    return [
        (m.device_id, m.previous_release)
        for m in members
        if m.wave is not None
        and m.previous_release is not None
        and m.previous_release != release_digest
    ]


def unclaimed(candidates: Sequence[str], busy: frozenset[str] | set[str]) -> list[str]:
    """Candidates not already in an active rollout: a device is in one rollout at a time."""
    return [device_id for device_id in candidates if device_id not in busy]


def below_floor(previous_components: Mapping[str, int], confirmed: Mapping[str, int]) -> str | None:
    """Why returning to a release would break a security floor the device confirmed.

    ``previous_components``: kind → security version of the release to return to;
    ``confirmed``: kind → security version the device reported running healthy.
    """
    for kind, version in sorted(previous_components.items()):
        floor = confirmed.get(kind, 0)
        if version < floor:
            return f"{kind} security_version {version} is below the device's floor {floor}"
    return None
