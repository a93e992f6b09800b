"""Device classes and devices: rows ⇄ records."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, text, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from fleet.domain.records import Device, DeviceClass, DeviceSigner, InstalledComponent
from fleet.store.errors import NotFound
from fleet.store.repositories.base import SqlRepository, chunked
from fleet.store.sqltypes import UtcDateTime
from fleet.store.tables import DeviceClassRow, DeviceRow, DeviceTagRow, FleetTable
from schemas import DeviceState

__all__ = ["SqlDeviceClassRepository", "SqlDeviceRepository"]


class SqlDeviceClassRepository(SqlRepository):
    def add(self, device_class: DeviceClass) -> None:
        self._insert([_class_row(device_class)])

    def get(self, name: str) -> DeviceClass | None:
        row = self._session.get(DeviceClassRow, name)
        return None if row is None else _class_record(row)

    def all(self) -> Sequence[DeviceClass]:
        rows = self._session.exec(select(DeviceClassRow).order_by(col(DeviceClassRow.name)))
        return [_class_record(row) for row in rows]


class SqlDeviceRepository(SqlRepository):
    def add(self, device: Device) -> None:
        self.add_many([device])

    def add_many(self, devices: Iterable[Device]) -> None:
        rows: list[FleetTable] = []
        for device in devices:
            rows.append(_device_row(device))
            rows.extend(_tag_rows(device.id, device.tags))
        self._insert(rows)

    def get(self, device_id: str) -> Device | None:
        row = self._session.get(DeviceRow, device_id)
        return None if row is None else self._with_tags([row])[0]

    def lock(self, device_ids: Iterable[str]) -> None:
        for chunk in chunked(sorted(set(device_ids))):
            query = (
                select(DeviceRow.id)
                .where(col(DeviceRow.id).in_(chunk))
                .order_by(col(DeviceRow.id))
                .with_for_update()
            )
            self._session.exec(query).all()

    def signers(self, device_ids: Iterable[str]) -> dict[str, DeviceSigner]:
        """Key, class and last counter of each enrolled device among ``device_ids``:
        one query per 500 ids, for checking a batch of signed messages."""
        found: dict[str, DeviceSigner] = {}
        for chunk in chunked(sorted(set(device_ids))):
            # SQLAlchemy's select: SQLModel's is typed for at most four columns.
            query = sa_select(
                col(DeviceRow.id), col(DeviceRow.device_class), col(DeviceRow.public_key_hex),
                col(DeviceRow.status_counter), col(DeviceRow.revoked_at),
            ).where(col(DeviceRow.id).in_(chunk))  # fmt: skip
            rows = self._session.execute(query)
            for device_id, device_class, key_hex, counter, revoked_at in rows:
                found[device_id] = DeviceSigner(
                    device_id, device_class, key_hex, counter, revoked=revoked_at is not None
                )
        return found

    def find(
        self,
        *,
        device_class: str | None = None,
        tags: Collection[str] = (),
        running_release_digest: str | None = None,
        after_id: str | None = None,
        limit: int | None = None,
    ) -> Sequence[Device]:
        query = select(DeviceRow).order_by(col(DeviceRow.id)).limit(limit)
        if device_class is not None:
            query = query.where(col(DeviceRow.device_class) == device_class)
        if running_release_digest is not None:
            query = query.where(col(DeviceRow.running_release_digest) == running_release_digest)
        if after_id is not None:
            query = query.where(col(DeviceRow.id) > after_id)
        if tags:
            query = query.where(col(DeviceRow.id).in_(_ids_with_all_tags(set(tags))))
        return self._with_tags(list(self._session.exec(query)))

    def set_tags(self, device_id: str, tags: Collection[str]) -> None:
        self._require(device_id)
        self._session.exec(delete(DeviceTagRow).where(col(DeviceTagRow.device_id) == device_id))
        self._insert(_tag_rows(device_id, tags))

    def accept_counter(self, device_id: str, counter: int, *, seen_at: datetime) -> bool:
        return self._advance(device_id, counter, last_seen=seen_at)

    def accept_counters(self, counters: Mapping[str, tuple[int, datetime]]) -> set[str]:
        """Advance many devices' counters (``id -> (counter, seen_at)``) where each is above
        the stored one; the ids that advanced. One ``UPDATE … FROM (VALUES …) RETURNING``
        per 200 devices, each row still checked-and-set atomically like ``accept_counter``.
        """
        advanced: set[str] = set()
        for chunk in chunked(sorted(counters), 200):
            rows = ", ".join(f"(:id{i}, :counter{i}, :seen{i})" for i in range(len(chunk)))
            statement = text(
                # SQLite names a VALUES list's columns only in a CTE, not in FROM.
                f"WITH reported(id, counter, seen_at) AS (VALUES {rows}) "
                "UPDATE device SET status_counter = reported.counter, last_seen = reported.seen_at "
                "FROM reported WHERE device.id = reported.id "
                "AND device.status_counter < reported.counter RETURNING device.id"
            ).bindparams(*(bindparam(f"seen{i}", type_=UtcDateTime) for i in range(len(chunk))))
            params: dict[str, Any] = {}
            for i, device_id in enumerate(chunk):
                counter, seen_at = counters[device_id]
                params |= {f"id{i}": device_id, f"counter{i}": counter, f"seen{i}": seen_at}
            advanced.update(self._session.execute(statement, params).scalars())
        return advanced

    def update_reported(
        self,
        device_id: str,
        *,
        counter: int,
        seen_at: datetime,
        state: DeviceState,
        running_release_digest: str | None,
        components: Sequence[InstalledComponent],
    ) -> bool:
        return self._advance(
            device_id,
            counter,
            last_seen=seen_at,
            state=state.value,
            running_release_digest=running_release_digest,
            components=[_component_json(c) for c in components],
        )

    def revoke(self, device_id: str, *, at: datetime) -> bool:
        """Mark the device revoked (and offline); False if it already was."""
        result = self._session.exec(
            update(DeviceRow)
            .where(col(DeviceRow.id) == device_id, col(DeviceRow.revoked_at).is_(None))
            .values(revoked_at=at, online=False)
        )
        return bool(result.rowcount)

    def decommission(self, device_id: str, *, at: datetime) -> bool:
        """Tombstone it: its key replaced by an unusable value (nothing verifies against
        it; the keyid stays unique), its tags gone, revoked. False if it already was."""
        row = self._session.get(DeviceRow, device_id)
        if row is None or row.decommissioned_at is not None:
            return False
        self._session.exec(delete(DeviceTagRow).where(col(DeviceTagRow.device_id) == device_id))
        self._session.exec(
            update(DeviceRow)
            .where(col(DeviceRow.id) == device_id)
            .values(
                decommissioned_at=at,
                revoked_at=func.coalesce(col(DeviceRow.revoked_at), at),
                online=False,
                public_key_hex="0" * 64,
                keyid=hashlib.sha256(f"decommissioned:{device_id}".encode()).hexdigest(),
            )
        )
        return True

    def set_online(self, device_id: str, online: bool, *, at: datetime) -> None:
        result = self._session.exec(
            update(DeviceRow)
            .where(col(DeviceRow.id) == device_id)
            .values(online=online, last_seen=at)
        )
        if result.rowcount == 0:
            raise NotFound(f"no device {device_id!r}")

    def _advance(self, device_id: str, counter: int, **values: Any) -> bool:
        # The counter comparison is in the WHERE clause, so check-and-set is one atomic
        # statement: of two concurrent reports, only the higher counter can win.
        result = self._session.exec(
            update(DeviceRow)
            .where(col(DeviceRow.id) == device_id, col(DeviceRow.status_counter) < counter)
            .values(status_counter=counter, **values)
        )
        if result.rowcount == 1:
            return True
        self._require(device_id)
        return False

    def _require(self, device_id: str) -> None:
        if self._session.get(DeviceRow, device_id) is None:
            raise NotFound(f"no device {device_id!r}")

    def _with_tags(self, rows: Sequence[DeviceRow]) -> list[Device]:
        tags: defaultdict[str, set[str]] = defaultdict(set)
        for ids in chunked(row.id for row in rows):
            tag_rows = self._session.exec(
                select(DeviceTagRow).where(col(DeviceTagRow.device_id).in_(ids))
            )
            for tag_row in tag_rows:
                tags[tag_row.device_id].add(tag_row.tag)
        return [_device_record(row, frozenset(tags[row.id])) for row in rows]


def _ids_with_all_tags(tags: set[str]) -> SelectOfScalar[str]:
    return (
        select(DeviceTagRow.device_id)
        .where(col(DeviceTagRow.tag).in_(tags))
        .group_by(col(DeviceTagRow.device_id))
        .having(func.count() == len(tags))
    )


def _class_row(record: DeviceClass) -> DeviceClassRow:
    return DeviceClassRow(
        name=record.name,
        ram_bytes=record.ram_bytes,
        flash_bytes=record.flash_bytes,
        supported_ops=sorted(record.supported_ops),
        cpu=record.cpu,
    )


def _class_record(row: DeviceClassRow) -> DeviceClass:
    return DeviceClass(
        name=row.name,
        ram_bytes=row.ram_bytes,
        flash_bytes=row.flash_bytes,
        supported_ops=frozenset(row.supported_ops),
        cpu=row.cpu,
    )


def _component_json(component: InstalledComponent) -> dict[str, Any]:
    return {
        "kind": component.kind,
        "version": component.version,
        "security_version": component.security_version,
    }


def _tag_rows(device_id: str, tags: Collection[str]) -> list[DeviceTagRow]:
    return [DeviceTagRow(device_id=device_id, tag=tag) for tag in sorted(set(tags))]


def _device_row(record: Device) -> DeviceRow:
    return DeviceRow(
        id=record.id,
        device_class=record.device_class,
        public_key_hex=record.public_key_hex,
        keyid=record.keyid,
        enrolled_at=record.enrolled_at,
        director_sequence=record.director_sequence,
        status_counter=record.status_counter,
        state=None if record.state is None else record.state.value,
        running_release_digest=record.running_release_digest,
        components=[_component_json(c) for c in record.components],
        last_seen=record.last_seen,
        online=record.online,
        revoked_at=record.revoked_at,
        decommissioned_at=record.decommissioned_at,
    )


def _device_record(row: DeviceRow, tags: frozenset[str]) -> Device:
    return Device(
        id=row.id,
        device_class=row.device_class,
        public_key_hex=row.public_key_hex,
        keyid=row.keyid,
        enrolled_at=row.enrolled_at,
        tags=tags,
        director_sequence=row.director_sequence,
        status_counter=row.status_counter,
        state=None if row.state is None else DeviceState(row.state),
        running_release_digest=row.running_release_digest,
        components=tuple(InstalledComponent(**c) for c in row.components),
        last_seen=row.last_seen,
        online=row.online,
        revoked_at=row.revoked_at,
        decommissioned_at=row.decommissioned_at,
    )
