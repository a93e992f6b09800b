"""The drift gate, registered through the rollout engine's ``Gates.extra`` extension point.

A wave of a rollout is held when the devices on the new release drift from the model
card's reference while the control cohort — devices of the rollout still on the release
they ran before, in the same windows — does not (``fleet.domain.drift.gate``): the wave
fails its gate. A shift both show (a season, a site) does not hold it. While there is too
little telemetry to judge, the gate *waits*: the wave neither fails nor advances, so a
canary is not paused before its first window closes. Gates in ``extra`` are code, not stored
data: :func:`drift_gates` gives ``tick_rollouts`` one for every wave at each tick. A gate
reads telemetry through the tick's own unit of work, which is open while it judges (on
SQLite it holds the write lock: a second unit of work would wait for it and time out).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from fleet.domain.drift import DEFAULT_WINDOWS, Verdict
from fleet.domain.rollout import Rollout
from fleet.domain.rollout_plan import Gate, GateVerdict, WaveObservations
from fleet.services.drift import drift_gate_in, reference_of
from fleet.store import UnitOfWork

__all__ = ["DriftGate", "drift_gates"]


@dataclass(frozen=True)
class DriftGate:
    uow: UnitOfWork  # the engine's tick, entered while the gate judges
    new_release: str
    control_release: str
    name: str = "drift"

    def judge(self, observations: WaveObservations) -> GateVerdict | None:
        verdict = drift_gate_in(self.uow, self.new_release, self.control_release)
        if verdict.verdict is Verdict.PASS and verdict.windows >= DEFAULT_WINDOWS:
            return None
        drifted = [r for r in verdict.reasons if r.code == "drift"]
        if drifted:
            detail = "; ".join(f"{r.code}: {r.histogram}: {r.detail}" for r in drifted)
            return GateVerdict(self.name, detail)
        # Too little telemetry to judge (none yet, too few reporters, no control in the
        # same windows): wait for the next windows rather than fail a healthy wave.
        holding = [r for r in verdict.reasons if r.code != "shared_shift"]
        detail = "; ".join(f"{r.code}: {r.histogram}: {r.detail}" for r in holding)
        if verdict.verdict is Verdict.PASS:
            # No drift so far, but a wave passes on W windows of evidence, not fewer.
            detail = f"{verdict.windows} of {DEFAULT_WINDOWS} windows judged so far"
        return GateVerdict(self.name, detail or "no telemetry for the new release yet", True)


def drift_gates() -> Callable[[UnitOfWork, Rollout], tuple[Gate, ...]]:
    """The extra gates of a rollout: a drift gate against its members' previous release,
    judged inside the tick's unit of work ``uow``. None when the rollout's plan turns it
    off or the new release's model has no registered reference (nothing to judge by)."""

    def gates(uow: UnitOfWork, rollout: Rollout) -> tuple[Gate, ...]:
        if not rollout.plan.drift_gate or reference_of(uow, rollout.release_digest) is None:
            return ()  # turned off, or no reference to judge the new release's model by
        previous = Counter(
            m.previous_release
            for m in uow.rollouts.members(rollout.id)
            if m.previous_release is not None and m.previous_release != rollout.release_digest
        )
        if not previous:
            return ()  # nothing to compare with: a first install
        control = previous.most_common(1)[0][0]
        return (DriftGate(uow, rollout.release_digest, control),)

    return gates
