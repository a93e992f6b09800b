"""Rollouts: the rollout row, its members, its append-only events, and what members report.

Plans and targets are stored as JSON documents; gates added through ``Gates.extra`` are
code, not data, and are not stored (a drift gate will be a named, configured gate).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import col, func, select

from fleet.domain.rollout import (
    TERMINAL,
    EventKind,
    Member,
    Rollout,
    RolloutEvent,
    RolloutStatus,
)
from fleet.domain.rollout_plan import Target, plan_from_json, plan_to_json
from fleet.store.errors import NotFound, mapped_integrity_errors
from fleet.store.repositories.base import SqlRepository, chunked
from fleet.store.tables import (
    DeviceRow,
    RolloutClaimRow,
    RolloutEventRow,
    RolloutMemberRow,
    RolloutRow,
    StatusEventRow,
)
from schemas import DeviceState

__all__ = ["MemberReport", "SqlRolloutRepository"]

MemberReport = tuple[str, int, str | None, bool]  # device, wave, terminal state or None, online

_OUTCOMES = (DeviceState.HEALTHY.value, DeviceState.FAILED.value, DeviceState.ROLLED_BACK.value)


def _target_to_json(target: Target) -> dict[str, Any]:
    return {
        "device_class": target.device_class,
        "tags": sorted(target.tags),
        "current_release": target.current_release,
    }


def _target_from_json(data: dict[str, Any]) -> Target:
    return Target(data["device_class"], frozenset(data["tags"]), data["current_release"])


class SqlRolloutRepository(SqlRepository):
    def add(self, rollout: Rollout, members: Iterable[Member]) -> None:
        """The rollout, its members and their claims, all or nothing.

        Raises ``AlreadyExists`` if another rollout holds one of the devices; the unit of
        work stays usable, so the caller may pick the free devices again and retry.
        """
        members = list(members)
        with mapped_integrity_errors(), self._session.begin_nested():
            self._session.add(_row(rollout, rollout.created_at))
            self._session.flush()
            # Claims go in device-id order: concurrent creations then wait on each other's
            # keys in the same order, which PostgreSQL resolves without a deadlock.
            for ids in chunked(sorted(m.device_id for m in members)):
                self._session.add_all(
                    [RolloutClaimRow(device_id=d, rollout_id=rollout.id) for d in ids]
                )
                self._session.flush()
            for chunk in chunked(members):
                self._session.add_all(
                    [
                        RolloutMemberRow(
                            rollout_id=rollout.id,
                            device_id=m.device_id,
                            rank=m.rank,
                            previous_release=m.previous_release,
                            wave=m.wave,
                        )
                        for m in chunk
                    ]
                )
                self._session.flush()

    def get(self, rollout_id: str, *, for_update: bool = False) -> Rollout | None:
        query = select(RolloutRow).where(col(RolloutRow.id) == rollout_id)
        if for_update:
            query = query.with_for_update()
        row = self._session.exec(query).first()
        return None if row is None else _rollout(row)

    def find(self, *, statuses: Collection[RolloutStatus] = ()) -> Sequence[Rollout]:
        """Oldest first."""
        query = select(RolloutRow).order_by(col(RolloutRow.created_at), col(RolloutRow.id))
        if statuses:
            query = query.where(col(RolloutRow.status).in_([s.value for s in statuses]))
        return [_rollout(row) for row in self._session.exec(query)]

    def save(self, rollout: Rollout, *, at: datetime) -> None:
        result = self._session.exec(
            update(RolloutRow)
            .where(col(RolloutRow.id) == rollout.id)
            .values(
                status=rollout.status.value,
                wave=rollout.wave,
                wave_started_at=rollout.wave_started_at,
                updated_at=at,
            )
        )
        if result.rowcount == 0:
            raise NotFound(f"no rollout {rollout.id!r}")
        if rollout.status in TERMINAL:
            self._session.exec(
                delete(RolloutClaimRow).where(col(RolloutClaimRow.rollout_id) == rollout.id)
            )

    def busy_devices(self, device_ids: Collection[str]) -> set[str]:
        """Which of these devices are held by a rollout that is not over."""
        return set(self.claims(device_ids))

    def claims(self, device_ids: Collection[str]) -> dict[str, str]:
        """Device → the active rollout holding it, for those of ``device_ids`` that are held."""
        held: dict[str, str] = {}
        for chunk in chunked(device_ids):
            rows = self._session.exec(
                select(RolloutClaimRow.device_id, RolloutClaimRow.rollout_id).where(
                    col(RolloutClaimRow.device_id).in_(chunk)
                )
            )
            held.update({device_id: rollout_id for device_id, rollout_id in rows})
        return held

    def detach(self, device_id: str) -> str | None:
        """Take the device out of its active rollout; return that rollout's id, if any.

        Its member row goes too, so the rollout's counts, gates and rollback no longer
        see the device; the audit log keeps who took it out and when.
        """
        rollout_id = self.claims([device_id]).get(device_id)
        if rollout_id is None:
            return None
        self._session.exec(
            delete(RolloutClaimRow).where(col(RolloutClaimRow.device_id) == device_id)
        )
        self._session.exec(
            delete(RolloutMemberRow)
            .where(col(RolloutMemberRow.rollout_id) == rollout_id)
            .where(col(RolloutMemberRow.device_id) == device_id)
        )
        return rollout_id

    def members(self, rollout_id: str, *, below_rank: int | None = None) -> Sequence[Member]:
        query = (
            select(RolloutMemberRow)
            .where(col(RolloutMemberRow.rollout_id) == rollout_id)
            .order_by(col(RolloutMemberRow.rank))
        )
        if below_rank is not None:
            query = query.where(col(RolloutMemberRow.rank) < below_rank)
        return [
            Member(r.device_id, r.rank, r.previous_release, r.wave)
            for r in self._session.exec(query)
        ]

    def mark_directed(
        self, rollout_id: str, device_ids: Sequence[str], *, wave: int, at: datetime
    ) -> None:
        for chunk in chunked(device_ids):
            self._session.exec(
                update(RolloutMemberRow)
                .where(col(RolloutMemberRow.rollout_id) == rollout_id)
                .where(col(RolloutMemberRow.device_id).in_(chunk))
                .values(wave=wave, directed_at=at)
            )

    def mark_rollback(self, rollout_id: str, device_id: str, outcome: str) -> None:
        self._session.exec(
            update(RolloutMemberRow)
            .where(col(RolloutMemberRow.rollout_id) == rollout_id)
            .where(col(RolloutMemberRow.device_id) == device_id)
            .values(rollback=outcome[:256])
        )

    def rollback_outcomes(self, rollout_id: str) -> dict[str, int]:
        rows = self._session.exec(
            select(RolloutMemberRow.rollback, func.count())
            .where(col(RolloutMemberRow.rollout_id) == rollout_id)
            .where(col(RolloutMemberRow.rollback).is_not(None))
            .group_by(col(RolloutMemberRow.rollback))
        )
        return {str(outcome): int(count) for outcome, count in rows}

    def reports(self, rollout: Rollout) -> list[MemberReport]:
        """Per directed member: its wave, its worst outcome on this rollout's release
        since the rollout began (rolled_back > failed > healthy, None if none yet), and
        whether it is online."""
        outcomes: dict[str, set[str]] = {}
        rows = self._session.exec(
            select(RolloutMemberRow.device_id, StatusEventRow.state)
            .join(StatusEventRow, col(StatusEventRow.device_id) == col(RolloutMemberRow.device_id))
            .where(col(RolloutMemberRow.rollout_id) == rollout.id)
            .where(col(RolloutMemberRow.wave).is_not(None))
            .where(col(StatusEventRow.release_digest) == rollout.release_digest)
            .where(col(StatusEventRow.state).in_(_OUTCOMES))
            .where(col(StatusEventRow.received_at) >= rollout.created_at)
            .distinct()
        )
        for device_id, state in rows:
            outcomes.setdefault(device_id, set()).add(state)
        members = self._session.exec(
            select(RolloutMemberRow.device_id, RolloutMemberRow.wave, DeviceRow.online)
            .join(DeviceRow, col(DeviceRow.id) == col(RolloutMemberRow.device_id))
            .where(col(RolloutMemberRow.rollout_id) == rollout.id)
            .where(col(RolloutMemberRow.wave).is_not(None))
        )
        reports: list[MemberReport] = []
        for device_id, wave, online in members:
            states = outcomes.get(device_id, set())
            worst = next((s for s in reversed(_OUTCOMES) if s in states), None)
            reports.append((device_id, -1 if wave is None else wave, worst, bool(online)))
        return reports

    def append_events(self, rollout_id: str, events: Sequence[RolloutEvent]) -> None:
        self._insert(
            [
                RolloutEventRow(
                    rollout_id=rollout_id,
                    at=e.at,
                    kind=e.kind.value,
                    status=e.status.value,
                    wave=e.wave,
                    actor=e.actor,
                    detail=dict(e.detail),
                )
                for e in events
            ]
        )

    def events(self, rollout_id: str) -> Sequence[RolloutEvent]:
        """Oldest first."""
        rows = self._session.exec(
            select(RolloutEventRow)
            .where(col(RolloutEventRow.rollout_id) == rollout_id)
            .order_by(col(RolloutEventRow.id))
        )
        return [
            RolloutEvent(
                kind=EventKind(r.kind),
                at=r.at,
                status=RolloutStatus(r.status),
                wave=r.wave,
                actor=r.actor,
                detail=dict(r.detail),
            )
            for r in rows
        ]


def _row(rollout: Rollout, at: datetime) -> RolloutRow:
    return RolloutRow(
        id=rollout.id,
        release_digest=rollout.release_digest,
        status=rollout.status.value,
        plan=plan_to_json(rollout.plan),
        target=_target_to_json(rollout.target),
        population=rollout.population,
        wave=rollout.wave,
        wave_started_at=rollout.wave_started_at,
        created_at=rollout.created_at,
        updated_at=at,
    )


def _rollout(row: RolloutRow) -> Rollout:
    return Rollout(
        id=row.id,
        release_digest=row.release_digest,
        plan=plan_from_json(row.plan),
        target=_target_from_json(row.target),
        population=row.population,
        created_at=row.created_at,
        status=RolloutStatus(row.status),
        wave=row.wave,
        wave_started_at=row.wave_started_at,
    )
