"""Staged rollouts: a plan of waves with health gates, a target, and progress per wave."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from fleet.api.models.common import Digest, Name, RequestModel, ResponseModel, Tags
from fleet.domain.rollout import Rollout, RolloutEvent
from fleet.domain.rollout_plan import FailurePolicy, Gates, Plan, PlanError, Target, Wave
from fleet.services.rollouts import CreatedRollout, RolloutProgress, WaveProgress

__all__ = [
    "GatesBody",
    "PlanBody",
    "RolloutCreate",
    "RolloutCreated",
    "RolloutDetail",
    "RolloutEventPublic",
    "RolloutId",
    "RolloutList",
    "RolloutPublic",
    "WaveBody",
    "WaveProgressPublic",
]

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
RolloutId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class GatesBody(RequestModel):
    max_failure_rate: Rate = 0.0
    max_rollback_rate: Rate = 0.0
    max_offline_share: Rate = 1.0
    min_reports: int = Field(default=1, ge=1, le=1_000_000)


class WaveBody(RequestModel):
    percent: float | None = Field(default=None, gt=0.0, le=100.0)
    count: int | None = Field(default=None, ge=1, le=10_000_000)
    soak_seconds: float = Field(default=0.0, ge=0.0, le=30 * 86400.0)
    gates: GatesBody = GatesBody()

    def to_domain(self) -> Wave:
        return Wave(
            percent=self.percent,
            count=self.count,
            soak=timedelta(seconds=self.soak_seconds),
            gates=Gates(**self.gates.model_dump()),
        )


class PlanBody(RequestModel):
    waves: list[WaveBody] = Field(min_length=1, max_length=32)
    on_failure: Literal["pause", "rollback"] = "rollback"
    drift_gate: bool = Field(
        default=True,
        description="hold a wave whose new release drifts from its model card's reference "
        "while the devices still on the old release do not (needs the server's drift gate "
        "and a registered reference)",
    )

    def to_domain(self) -> Plan:
        """Raises PlanError for a plan pydantic cannot judge (e.g. shrinking waves)."""
        waves = tuple(w.to_domain() for w in self.waves)
        return Plan(waves, FailurePolicy(self.on_failure), drift_gate=self.drift_gate)


class TargetBody(RequestModel):
    device_class: Name
    tags: Tags = Field(default_factory=list)
    current_release: Digest | None = None

    def to_domain(self) -> Target:
        return Target(self.device_class, frozenset(self.tags), self.current_release)


class RolloutCreate(RequestModel):
    release_digest: Digest
    plan: PlanBody
    target: TargetBody
    id: RolloutId | None = Field(default=None, description="default: a new random id")


class RolloutPublic(ResponseModel):
    id: str
    release_digest: str
    status: str
    wave: int = Field(description="index of the current wave; -1 before approval")
    waves: int
    population: int
    created_at: datetime
    wave_started_at: datetime | None

    @classmethod
    def from_domain(cls, rollout: Rollout) -> RolloutPublic:
        return cls(
            id=rollout.id,
            release_digest=rollout.release_digest,
            status=rollout.status.value,
            wave=rollout.wave,
            waves=len(rollout.plan.waves),
            population=rollout.population,
            created_at=rollout.created_at,
            wave_started_at=rollout.wave_started_at,
        )


class RolloutList(ResponseModel):
    items: list[RolloutPublic]


class WaveProgressPublic(ResponseModel):
    index: int
    cut: int = Field(description="devices in this wave and the ones before it")
    directed: int = Field(description="devices this wave directed")
    states: dict[str, int] = Field(description="healthy, failed, rolled_back, pending")

    @classmethod
    def from_domain(cls, wave: WaveProgress) -> WaveProgressPublic:
        return cls(index=wave.index, cut=wave.cut, directed=wave.directed, states=wave.states)


class RolloutEventPublic(ResponseModel):
    kind: str
    at: datetime
    status: str
    wave: int | None
    actor: str
    detail: dict[str, Any]

    @classmethod
    def from_domain(cls, event: RolloutEvent) -> RolloutEventPublic:
        return cls(
            kind=event.kind.value,
            at=event.at,
            status=event.status.value,
            wave=event.wave,
            actor=event.actor,
            detail=dict(event.detail),
        )


class RolloutCreated(RolloutPublic):
    left_out: dict[str, dict[str, str | None]] = Field(
        description=(
            "targeted devices not in the population, by reason: `firmware_too_old` → "
            "device → the firmware version it reported (null if never), "
            "`in_other_rollout` → device → the active rollout holding it"
        )
    )

    @classmethod
    def from_created(cls, created: CreatedRollout) -> RolloutCreated:
        public = RolloutPublic.from_domain(created.rollout)
        return cls(**public.model_dump(), left_out=created.left_out)


class RolloutDetail(RolloutPublic):
    target: dict[str, Any]
    plan: dict[str, Any]
    progress: list[WaveProgressPublic]
    rollback: dict[str, int] = Field(description="rollback outcome per device: count each")
    events: list[RolloutEventPublic]

    @classmethod
    def from_progress(cls, progress: RolloutProgress, plan: dict[str, Any]) -> RolloutDetail:
        rollout = progress.rollout
        public = RolloutPublic.from_domain(rollout)
        return cls(
            **public.model_dump(),
            target={
                "device_class": rollout.target.device_class,
                "tags": sorted(rollout.target.tags),
                "current_release": rollout.target.current_release,
            },
            plan=plan,
            progress=[WaveProgressPublic.from_domain(w) for w in progress.waves],
            rollback=progress.rollback,
            events=[RolloutEventPublic.from_domain(e) for e in progress.events],
        )


__all__ += ["PlanError", "TargetBody"]
