"""Staged rollouts: create, act (operator), tick (engine), and report progress.

Each use case is one transaction over the unit of work: the rollout row is locked
(``SELECT ... FOR UPDATE``), the pure state machine (``fleet.domain.rollout``) decides,
and its events, the new state and the director manifests the events call for are
written together. A crash before the commit leaves nothing; after it, everything.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from fleet.domain.eligibility import below_minimum_firmware
from fleet.domain.records import Device, Release
from fleet.domain.rollout import (
    TERMINAL,
    EventKind,
    InvalidTransition,
    Member,
    Rollout,
    RolloutEvent,
    RolloutStatus,
    below_floor,
    unclaimed,
)
from fleet.domain.rollout_plan import Gate, Plan, Target, WaveObservations, cohort_order
from fleet.services.assignments import issue_directions
from fleet.services.director import Director
from fleet.services.errors import ConflictError, InvalidInput, NotFoundError
from fleet.services.releases import refuse_untrusted, untrusted_reason
from fleet.store import AlreadyExists, UnitOfWork
from schemas import Action, RootMetadata

__all__ = [
    "ACTIONS",
    "CreatedRollout",
    "ExtraGates",
    "RolloutProgress",
    "WaveProgress",
    "act_on_rollout",
    "create_rollout",
    "list_rollouts",
    "observe",
    "rollout_progress",
    "tick_rollouts",
]

ACTIONS = ("approve", "pause", "resume", "abort", "rollback")
_SENDING = frozenset({"approve", "resume"})  # the actions after which waves go out
ROLLBACK_DIRECTED = "directed"


@dataclass(frozen=True)
class WaveProgress:
    index: int
    cut: int  # devices in the waves up to this one
    directed: int  # devices this wave directed
    states: dict[str, int] = field(default_factory=dict)  # healthy/failed/rolled_back/pending


@dataclass(frozen=True)
class RolloutProgress:
    rollout: Rollout
    waves: list[WaveProgress]
    events: Sequence[RolloutEvent]
    rollback: dict[str, int]


@dataclass(frozen=True)
class CreatedRollout:
    """A new rollout, and the targeted devices it left out: reason → device → detail
    (``firmware_too_old``: the version it runs, or None if never reported;
    ``in_other_rollout``: the rollout that holds it)."""

    rollout: Rollout
    left_out: dict[str, dict[str, str | None]]


def create_rollout(
    uow: UnitOfWork,
    *,
    release_digest: str,
    plan: Plan,
    target: Target,
    root: RootMetadata,
    actor: str,
    now: datetime,
    rollout_id: str | None = None,
) -> CreatedRollout:
    """Snapshot the targeted devices (with the release each runs) as the population.

    Devices already in an active rollout are left out (a device is in one at a time), and
    so are devices whose reported firmware is below the release's signed
    ``min_firmware_version``; the result says which. Revoked devices are never targeted.
    A release whose signatures ``root`` no longer accepts is refused (409
    ``release_untrusted``).
    """
    rollout_id = rollout_id or uuid.uuid4().hex
    with uow:
        release = uow.releases.get(release_digest)
        if release is None:
            raise NotFoundError(f"release {release_digest} is not registered")
        refuse_untrusted(release, root)
        if target.device_class != release.device_class:
            raise InvalidInput(
                f"release {release.name} {release.version} is for {release.device_class!r}, "
                f"not {target.device_class!r}",
                code="device_class_mismatch",
            )
        if uow.rollouts.get(rollout_id) is not None:
            raise ConflictError(f"rollout {rollout_id} exists", code="already_exists")
        found = uow.devices.find(
            device_class=target.device_class,
            tags=target.tags,
            running_release_digest=target.current_release,
        )
        targeted = [d for d in found if d.revoked_at is None]
        minimum = release.manifest().constraints.min_firmware_version
        too_old = below_minimum_firmware(targeted, minimum)
        devices = {d.id: d for d in targeted if d.id not in too_old}
        rollout, held = _claim_population(
            uow, rollout_id, release_digest, plan, target, devices, now, too_old=len(too_old)
        )
        left_out: dict[str, dict[str, str | None]] = {}
        if too_old:
            left_out[FIRMWARE_TOO_OLD] = dict(too_old)
        if held:
            left_out[IN_OTHER_ROLLOUT] = dict(held)
        counts = {reason: len(found) for reason, found in left_out.items()}
        created = rollout.created(actor=actor)
        if counts:
            created = replace(created, detail={**created.detail, "left_out": counts})
        uow.rollouts.append_events(rollout.id, [created])
        uow.audit.append(
            at=now,
            actor=actor,
            action="rollout.create",
            subject=f"rollout:{rollout.id}",
            detail={"release": release_digest, "population": rollout.population, **counts},
        )
        uow.commit()
    return CreatedRollout(rollout, left_out)


FIRMWARE_TOO_OLD = "firmware_too_old"
IN_OTHER_ROLLOUT = "in_other_rollout"
_CLAIM_ATTEMPTS = 5


def _claim_population(
    uow: UnitOfWork,
    rollout_id: str,
    release_digest: str,
    plan: Plan,
    target: Target,
    devices: Mapping[str, Device],
    now: datetime,
    *,
    too_old: int,
) -> tuple[Rollout, dict[str, str]]:
    """Add the rollout with every targeted device no other active rollout holds; return
    it with the held devices and the rollout holding each.

    The database keeps a device in one active rollout (``rollout_claim``); when a
    concurrent creation claimed one of ours between our read and our write, read the free
    devices again and retry, so the loser gets the rest instead of an error.
    """
    for _ in range(_CLAIM_ATTEMPTS):
        held = uow.rollouts.claims(list(devices))
        free = unclaimed(list(devices), set(held))
        if not free:
            raise InvalidInput(
                "no device matches the target (or all are in other rollouts)"
                + (f"; {too_old} run firmware below the release's minimum" if too_old else "")
            )
        ordered = cohort_order(rollout_id, free)
        members = [
            Member(device_id, rank, devices[device_id].running_release_digest)
            for rank, device_id in enumerate(ordered)
        ]
        rollout = Rollout(
            id=rollout_id,
            release_digest=release_digest,
            plan=plan,
            target=target,
            population=len(members),
            created_at=now,
        )
        try:
            uow.rollouts.add(rollout, members)
        except AlreadyExists:
            continue
        return rollout, held
    raise ConflictError(
        f"devices kept being claimed by concurrent rollouts ({_CLAIM_ATTEMPTS} tries); retry",
        code="rollout_claim_contended",
    )


def act_on_rollout(
    uow: UnitOfWork,
    director: Director,
    rollout_id: str,
    action: str,
    *,
    actor: str,
    now: datetime,
    root: RootMetadata,
) -> Rollout:
    """An operator action; refused with ``invalid_transition`` if the state forbids it,
    and approving or resuming with ``release_untrusted`` if the release's keys were
    revoked since the rollout was created."""
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    with uow:
        rollout = uow.rollouts.get(rollout_id, for_update=True)
        if rollout is None:
            raise NotFoundError(f"no rollout {rollout_id}")
        if action in _SENDING and not rollout.terminal:
            refuse_untrusted(_release(uow, rollout.release_digest), root)
        transition: Callable[..., tuple[Rollout, list[RolloutEvent]]] = getattr(rollout, action)
        try:
            after, events = transition(now=now, actor=actor)
        except InvalidTransition as exc:
            raise ConflictError(str(exc), code=exc.code) from exc
        _record(uow, director, after, events, now=now)
        uow.audit.append(
            at=now,
            actor=actor,
            action=f"rollout.{action}",
            subject=f"rollout:{rollout.id}",
            detail={"from": rollout.status.value, "to": after.status.value, "wave": after.wave},
        )
        uow.commit()
    return after


def observe(uow: UnitOfWork, rollout: Rollout) -> WaveObservations:
    reports = uow.rollouts.reports(rollout)
    outcomes = Counter(state for _, _, state, _ in reports)
    return WaveObservations(
        directed=len(reports),
        healthy=outcomes.get("healthy", 0),
        failed=outcomes.get("failed", 0),
        rolled_back=outcomes.get("rolled_back", 0),
        offline=sum(1 for _, _, _, online in reports if not online),
    )


ExtraGates = Callable[[UnitOfWork, Rollout], tuple[Gate, ...]]
"""The ``Gates.extra`` of a rollout's waves (code, not stored): e.g. the drift gate."""


def tick_rollouts(
    new_uow: Callable[[], UnitOfWork],
    director: Director,
    *,
    now: Callable[[], datetime],
    root: Callable[[], RootMetadata],
    extra_gates: ExtraGates | None = None,
) -> int:
    """One engine pass over running rollouts; returns how many manifests were queued.

    A wave about to start is held instead (paused, ``release_untrusted: …``) when the
    current root no longer vouches for the release: its devices would refuse it.
    """
    with new_uow() as uow:
        running = [r.id for r in uow.rollouts.find(statuses=[RolloutStatus.RUNNING])]
    queued = 0
    for rollout_id in running:
        with new_uow() as uow:
            rollout = uow.rollouts.get(rollout_id, for_update=True)
            if rollout is None or rollout.status is not RolloutStatus.RUNNING:
                continue
            if extra_gates is not None:
                rollout = _with_extra(rollout, extra_gates(uow, rollout))
            at = now()
            after, events = rollout.tick(observe(uow, rollout), now=at)
            if not events:
                continue
            if any(e.kind is EventKind.WAVE_STARTED for e in events):
                reason = untrusted_reason(_release(uow, rollout.release_digest), root())
                if reason is not None:
                    after, events = rollout.pause(
                        now=at, actor="engine", reason=f"release_untrusted: {reason}"
                    )
            queued += _record(uow, director, after, events, now=at)
            uow.commit()
    return queued


def _with_extra(rollout: Rollout, extra: tuple[Gate, ...]) -> Rollout:
    if not extra:
        return rollout
    waves = tuple(replace(w, gates=replace(w.gates, extra=extra)) for w in rollout.plan.waves)
    return replace(rollout, plan=replace(rollout.plan, waves=waves))


def _record(
    uow: UnitOfWork,
    director: Director,
    rollout: Rollout,
    events: Sequence[RolloutEvent],
    *,
    now: datetime,
) -> int:
    """Persist a transition and carry out what its events call for; count manifests."""
    uow.rollouts.save(rollout, at=now)
    uow.rollouts.append_events(rollout.id, events)
    queued = 0
    for event in events:
        if event.kind is EventKind.WAVE_STARTED:
            queued += _direct_wave(uow, director, rollout, event, now=now)
        elif event.kind is EventKind.ROLLED_BACK:
            queued += _roll_back(uow, director, rollout, now=now)
    return queued


def _release(uow: UnitOfWork, digest: str) -> Release:
    release = uow.releases.get(digest)
    if release is None:
        raise NotFoundError(f"release {digest} is not registered")
    return release


def _direct_wave(
    uow: UnitOfWork, director: Director, rollout: Rollout, event: RolloutEvent, *, now: datetime
) -> int:
    assert event.wave is not None
    cut = rollout.cuts[event.wave]
    new = [m for m in uow.rollouts.members(rollout.id, below_rank=cut) if m.wave is None]
    if not new:
        return 0
    devices = [uow.devices.get(m.device_id) for m in new]
    release = _release(uow, rollout.release_digest)
    issue_directions(
        uow,
        director,
        release,
        [d for d in devices if d is not None],
        now=now,
        rollout_id=rollout.id,
        wave=event.wave,
    )
    uow.rollouts.mark_directed(rollout.id, [m.device_id for m in new], wave=event.wave, at=now)
    return len(new)


def _security_versions(release: Release) -> dict[str, int]:
    return {c.kind.value: c.security_version for c in release.manifest().components}


def _roll_back(uow: UnitOfWork, director: Director, rollout: Rollout, *, now: datetime) -> int:
    """Direct every directed device back to the release it ran before, with a higher
    sequence; skip (and record why) those a security floor or a lost release forbids."""
    queued = 0
    versions: dict[str, dict[str, int]] = {}
    for member in uow.rollouts.members(rollout.id):
        if member.wave is None:
            continue
        previous = member.previous_release
        if previous is None or previous == rollout.release_digest:
            uow.rollouts.mark_rollback(rollout.id, member.device_id, "skipped: no previous release")
            continue
        release = uow.releases.get(previous)
        device = uow.devices.get(member.device_id)
        if release is None or device is None:
            uow.rollouts.mark_rollback(rollout.id, member.device_id, "skipped: release gone")
            continue
        if previous not in versions:
            versions[previous] = _security_versions(release)
        confirmed = {c.kind: c.security_version for c in device.components}
        refusal = below_floor(versions[previous], confirmed)
        if refusal is not None:
            uow.rollouts.mark_rollback(rollout.id, member.device_id, f"skipped: {refusal}")
            continue
        issue_directions(
            uow,
            director,
            release,
            [device],
            now=now,
            action=Action.ROLLBACK,
            rollout_id=rollout.id,
            wave=member.wave,
        )
        uow.rollouts.mark_rollback(rollout.id, member.device_id, ROLLBACK_DIRECTED)
        queued += 1
    return queued


def rollout_progress(uow: UnitOfWork, rollout_id: str) -> RolloutProgress:
    with uow:
        rollout = uow.rollouts.get(rollout_id)
        if rollout is None:
            raise NotFoundError(f"no rollout {rollout_id}")
        per_wave: dict[int, Counter[str]] = {}
        for _, wave, state, _ in uow.rollouts.reports(rollout):
            per_wave.setdefault(wave, Counter())[state or "pending"] += 1
        waves = [
            WaveProgress(
                index=index,
                cut=cut,
                directed=sum(per_wave.get(index, Counter()).values()),
                states=dict(per_wave.get(index, Counter())),
            )
            for index, cut in enumerate(rollout.cuts)
        ]
        return RolloutProgress(
            rollout=rollout,
            waves=waves,
            events=uow.rollouts.events(rollout.id),
            rollback=uow.rollouts.rollback_outcomes(rollout.id),
        )


def list_rollouts(uow: UnitOfWork, *, active_only: bool = False) -> Sequence[Rollout]:
    with uow:
        statuses = [s for s in RolloutStatus if s not in TERMINAL] if active_only else []
        return uow.rollouts.find(statuses=statuses)
