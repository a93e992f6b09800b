"""Draining the director outbox: publish each device's newest manifest, then mark it.

A record is marked published only after the broker acknowledged it, in the same
transaction that read it, so a crash anywhere leaves it to be sent again (devices
ignore a manifest whose sequence they have already seen).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from fleet.domain.records import DirectorRecord
from fleet.services.director import delivery_bytes
from fleet.store import UnitOfWork
from schemas import Envelope

__all__ = ["DesiredStatePublisher", "desired_topic", "pending_manifests", "publish_pending"]


def desired_topic(device_id: str) -> str:
    return f"tf/d/{device_id}/desired"


class DesiredStatePublisher(Protocol):
    """The outbound port: retained, acknowledged delivery of a device's desired state."""

    def publish_desired(self, device_id: str, payload: bytes) -> object: ...

    def confirm(self, handles: Sequence[object], *, timeout: float) -> None:
        """Return once every handle is acknowledged, or raise."""
        ...


def _newest_per_device(records: Sequence[DirectorRecord]) -> dict[str, DirectorRecord]:
    newest: dict[str, DirectorRecord] = {}
    for record in records:
        current = newest.get(record.device_id)
        if current is None or record.sequence > current.sequence:
            newest[record.device_id] = record
    return newest


def pending_manifests(uow: UnitOfWork) -> int:
    """Director manifests the broker has not acknowledged yet, every replica's."""
    with uow:
        return uow.director.count_unpublished()


def publish_pending(
    uow: UnitOfWork,
    publisher: DesiredStatePublisher,
    *,
    roots: Sequence[Envelope],
    now: Callable[[], datetime],
    limit: int = 500,
    timeout: float = 30.0,
) -> int:
    """Publish up to ``limit`` outbox records; return how many were marked published."""
    with uow:
        records = uow.director.unpublished(limit=limit)
        if not records:
            return 0
        releases: dict[str, Envelope] = {}
        handles = []
        for record in _newest_per_device(records).values():
            release = releases.get(record.release_digest)
            if release is None:
                stored = uow.releases.get(record.release_digest)
                assert stored is not None, "a director record names a registered release"
                release = releases[record.release_digest] = Envelope.from_bytes(
                    stored.envelope_json.encode(), kind="release"
                )
            director = Envelope.from_bytes(record.envelope_json.encode(), kind="director")
            payload = delivery_bytes(director, release, tuple(roots))
            handles.append(publisher.publish_desired(record.device_id, payload))
        publisher.confirm(handles, timeout=timeout)
        published_at = now()
        for record in records:
            uow.director.mark_published(record.device_id, record.sequence, at=published_at)
        uow.commit()
    return len(records)
