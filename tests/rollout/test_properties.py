"""Invariants of the rollout state machine over random sequences of events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.domain.rollout import (
    TERMINAL,
    InvalidTransition,
    Member,
    Rollout,
    RolloutStatus,
    rollback_targets,
    unclaimed,
)
from fleet.domain.rollout_plan import (
    FailurePolicy,
    Gates,
    Plan,
    Target,
    Wave,
    WaveObservations,
    cohort_order,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEVICES = [f"dev-{i:03d}" for i in range(60)]
ACTIONS = ("approve", "pause", "resume", "abort", "rollback")

waves = st.lists(st.floats(min_value=1, max_value=100), min_size=1, max_size=5).map(sorted)
plans = st.builds(
    lambda percents, policy, soak, gates: Plan(
        tuple(Wave(percent=p, soak=timedelta(seconds=soak), gates=gates) for p in percents),
        policy,
    ),
    waves,
    st.sampled_from(FailurePolicy),
    st.integers(0, 5),
    st.builds(
        Gates,
        max_failure_rate=st.floats(0, 1),
        max_rollback_rate=st.floats(0, 1),
        min_reports=st.integers(1, 10),
    ),
)
# A step: an operator action on a rollout, a tick with random reports, or a new rollout.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("act"), st.integers(0, 3), st.sampled_from(ACTIONS)),
        st.tuples(st.just("tick"), st.integers(0, 3), st.integers(0, 4), st.floats(0, 1)),
        st.tuples(st.just("create"), st.integers(0, 3), st.sets(st.sampled_from(DEVICES))),
    ),
    max_size=40,
)


class World:
    """Rollouts and their members as the engine keeps them, driven by the pure core."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rollouts: dict[str, Rollout] = {}
        self.members: dict[str, list[Member]] = {}
        self.running = {d: f"rel-{i % 3}" for i, d in enumerate(DEVICES)}
        self.before: dict[tuple[str, str], str] = {}
        self.now = T0

    def busy(self) -> set[str]:
        return {
            m.device_id
            for rid, members in self.members.items()
            if not self.rollouts[rid].terminal
            for m in members
        }

    def create(self, index: int, candidates: set[str]) -> None:
        rid = f"r{len(self.rollouts)}-{index}"
        free = unclaimed(sorted(candidates), self.busy())
        if not free:
            return
        ordered = cohort_order(rid, free)
        self.members[rid] = [Member(d, r, self.running[d]) for r, d in enumerate(ordered)]
        for d in ordered:
            self.before[(rid, d)] = self.running[d]
        self.rollouts[rid] = Rollout(rid, f"new-{rid}", self.plan, Target("c"), len(free), T0)

    def apply(self, rid: str, after: Rollout) -> None:
        previous = self.rollouts[rid]
        assert not (previous.terminal and after != previous), "a terminal rollout changed"
        assert after.directed_count() >= previous.directed_count(), "a wave shrank"
        cut = after.directed_count()
        self.members[rid] = [
            m if m.wave is not None or m.rank >= cut else Member(m.device_id, m.rank,
                                                                 m.previous_release, after.wave)
            for m in self.members[rid]
        ]  # fmt: skip
        for m in self.members[rid]:
            if m.wave is not None:
                self.running[m.device_id] = after.release_digest
        if after.status is RolloutStatus.ROLLED_BACK and previous.status is not after.status:
            for device_id, release in rollback_targets(self.members[rid], after.release_digest):
                assert release == self.before[(rid, device_id)]
                self.running[device_id] = release
        self.rollouts[rid] = after


@settings(max_examples=200, deadline=None)
@given(plan=plans, steps=steps)
def test_invariants_hold_over_any_sequence(plan: Plan, steps: list[tuple]) -> None:  # type: ignore[type-arg]
    world = World(plan)
    for step in steps:
        world.now += timedelta(seconds=2)
        if step[0] == "create":
            world.create(step[1], step[2])
            continue
        if not world.rollouts:
            continue
        rid = sorted(world.rollouts)[step[1] % len(world.rollouts)]
        current = world.rollouts[rid]
        if step[0] == "act":
            try:
                after, events = getattr(current, step[2])(now=world.now, actor="op")
            except InvalidTransition:
                assert current.terminal or step[2] != "abort"
                continue
            assert events, "every transition is an event"
        else:
            directed = current.directed_count()
            bad = min(directed, step[2])
            observed = WaveObservations(
                directed=directed,
                healthy=int((directed - bad) * step[3]),
                rolled_back=bad,
            )
            after, events = current.tick(observed, now=world.now)
            assert bool(events) == (after != current)
        world.apply(rid, after)
        # No device is ever in two active rollouts at once.
        active = [
            {m.device_id for m in world.members[r]}
            for r, ro in world.rollouts.items()
            if ro.status not in TERMINAL
        ]
        seen: set[str] = set()
        for devices in active:
            assert not seen & devices
            seen |= devices
