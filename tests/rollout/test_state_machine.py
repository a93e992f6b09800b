"""The rollout state machine, one behaviour per test (fleet/domain/rollout.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet.domain.rollout import (
    EventKind,
    InvalidTransition,
    Member,
    Rollout,
    RolloutStatus,
    below_floor,
    rollback_targets,
)
from fleet.domain.rollout_plan import (
    FailurePolicy,
    Gates,
    GateVerdict,
    Plan,
    PlanError,
    Target,
    Wave,
    WaveObservations,
    cohort,
    cohort_order,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SOAK = timedelta(seconds=5)
GATES = Gates(max_failure_rate=0.1, max_rollback_rate=0.1, min_reports=5)


def plan(policy: FailurePolicy = FailurePolicy.ROLLBACK) -> Plan:
    return Plan(tuple(Wave(percent=p, soak=SOAK, gates=GATES) for p in (1, 10, 50, 100)), policy)


def rollout(policy: FailurePolicy = FailurePolicy.ROLLBACK) -> Rollout:
    return Rollout("r1", "a" * 64, plan(policy), Target("kws"), population=1000, created_at=T0)


def healthy(n: int) -> WaveObservations:
    return WaveObservations(directed=n, healthy=n)


def test_plan_cuts_grow_and_end_with_everyone() -> None:
    assert plan().cuts(1000) == (10, 100, 500, 1000)
    assert plan().cuts(7) == (1, 1, 4, 7)


def test_shrinking_or_mixed_waves_are_refused() -> None:
    with pytest.raises(PlanError):
        Plan((Wave(percent=50), Wave(percent=10)))
    with pytest.raises(PlanError):
        Plan((Wave(percent=50), Wave(count=10)))
    with pytest.raises(PlanError):
        Wave()


def test_cohorts_are_stable_and_in_the_unit_interval() -> None:
    assert cohort("r1", "dev-1") == cohort("r1", "dev-1")
    assert cohort("r1", "dev-1") != cohort("r2", "dev-1")
    assert all(0.0 <= cohort("r", f"d{i}") < 1.0 for i in range(200))
    ids = [f"d{i}" for i in range(50)]
    assert cohort_order("r", ids) == cohort_order("r", list(reversed(ids)))


def test_approve_starts_the_first_wave() -> None:
    after, events = rollout().approve(now=T0, actor="alice")
    assert after.status is RolloutStatus.RUNNING
    assert after.wave == 0
    assert [e.kind for e in events] == [EventKind.APPROVED, EventKind.WAVE_STARTED]
    assert events[1].detail == {"cut": 10, "new": 10}


def test_a_wave_waits_for_its_soak_time_and_reports() -> None:
    running, _ = rollout().approve(now=T0, actor="alice")
    assert running.tick(healthy(10), now=T0 + SOAK / 2) == (running, [])
    assert running.tick(WaveObservations(directed=10, healthy=2), now=T0 + SOAK) == (running, [])
    after, events = running.tick(healthy(10), now=T0 + SOAK)
    assert after.wave == 1
    assert [e.kind for e in events] == [EventKind.WAVE_STARTED]


def test_the_last_wave_completes_the_rollout() -> None:
    current, _ = rollout().approve(now=T0, actor="alice")
    now = T0
    for cut in (10, 100, 500, 1000):
        now += SOAK
        current, _ = current.tick(healthy(cut), now=now)
    assert current.status is RolloutStatus.COMPLETED


def test_a_failed_gate_rolls_back_by_policy() -> None:
    running, _ = rollout().approve(now=T0, actor="alice")
    observed = WaveObservations(directed=10, healthy=7, rolled_back=3)
    after, events = running.tick(observed, now=T0 + timedelta(seconds=1))
    assert after.status is RolloutStatus.ROLLED_BACK
    assert [e.kind for e in events] == [EventKind.GATE_FAILED, EventKind.ROLLED_BACK]
    assert events[0].detail["gate"] == "max_rollback_rate"


def test_a_failed_gate_pauses_by_policy_and_resume_soaks_again() -> None:
    running, _ = rollout(FailurePolicy.PAUSE).approve(now=T0, actor="alice")
    paused, events = running.tick(WaveObservations(directed=10, failed=5, healthy=5), now=T0)
    assert paused.status is RolloutStatus.PAUSED
    assert [e.kind for e in events] == [EventKind.GATE_FAILED, EventKind.PAUSED]
    resumed, _ = paused.resume(now=T0 + SOAK, actor="bob")
    assert resumed.wave_started_at == T0 + SOAK


def test_the_offline_gate() -> None:
    gates = Gates(max_offline_share=0.2)
    observed = WaveObservations(directed=10, healthy=10, offline=3)
    assert gates.judge(observed) == GateVerdict("max_offline_share", "offline share 0.300 > 0.2")


def test_extra_gates_are_consulted() -> None:
    class Drift:
        name = "max_drift"

        def judge(self, observations: WaveObservations) -> GateVerdict | None:
            return GateVerdict(self.name, "psi 0.4 > 0.2")

    assert Gates(extra=(Drift(),)).judge(healthy(3)) == GateVerdict("max_drift", "psi 0.4 > 0.2")


class Scripted:
    """An extra gate that answers what the test tells it to."""

    name = "drift"

    def __init__(self, verdict: GateVerdict | None) -> None:
        self.verdict = verdict

    def judge(self, observations: WaveObservations) -> GateVerdict | None:
        return self.verdict


def test_a_waiting_gate_holds_the_wave_without_failing_it() -> None:
    waiting = Scripted(GateVerdict("drift", "no telemetry for the new release yet", True))
    gates = Gates(max_failure_rate=0.1, min_reports=5, extra=(waiting,))
    waves = tuple(Wave(percent=p, soak=SOAK, gates=gates) for p in (10, 100))
    running, _ = (
        Rollout("r1", "a" * 64, Plan(waves, FailurePolicy.ROLLBACK), Target("kws"), 1000, T0)
        .approve(now=T0, actor="alice")
    )  # fmt: skip
    for late in (SOAK, SOAK * 100):
        assert running.tick(healthy(100), now=T0 + late) == (running, [])
    # a health gate still fails the wave while the drift gate waits
    failed, events = running.tick(WaveObservations(directed=100, healthy=50, failed=50), now=T0)
    assert failed.status is RolloutStatus.ROLLED_BACK
    assert events[0].detail["gate"] == "max_failure_rate"
    waiting.verdict = None  # the telemetry arrived and shows no drift
    advanced, events = running.tick(healthy(100), now=T0 + SOAK * 100)
    assert advanced.wave == 1 and [e.kind for e in events] == [EventKind.WAVE_STARTED]


def test_a_failing_extra_gate_outranks_a_waiting_one() -> None:
    waiting = Scripted(GateVerdict("drift", "insufficient_data", True))
    failing = Scripted(GateVerdict("drift", "drift: rms_x"))
    assert Gates(extra=(waiting, failing)).judge(healthy(3)) == failing.verdict


@pytest.mark.parametrize("action", ["approve", "pause", "resume", "abort", "rollback"])
def test_a_terminal_rollout_refuses_every_action(action: str) -> None:
    aborted, _ = rollout().abort(now=T0, actor="alice")
    with pytest.raises(InvalidTransition, match="aborted"):
        getattr(aborted, action)(now=T0, actor="alice")
    assert aborted.tick(healthy(10), now=T0 + SOAK) == (aborted, [])


def test_rollback_targets_each_directed_device_s_previous_release() -> None:
    members = [
        Member("d1", 0, "old1", wave=0),
        Member("d2", 1, "old2", wave=0),
        Member("d3", 2, None, wave=0),
        Member("d4", 3, "old1", wave=None),
        Member("d5", 4, "new", wave=0),
    ]
    assert rollback_targets(members, "new") == [("d1", "old1"), ("d2", "old2")]


def test_below_floor_refuses_a_release_older_than_a_confirmed_one() -> None:
    assert below_floor({"firmware": 3}, {"firmware": 3}) is None
    reason = below_floor({"firmware": 2, "model": 5}, {"firmware": 3})
    assert reason == "firmware security_version 2 is below the device's floor 3"
