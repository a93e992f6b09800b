"""Director sequences and the outbox that publishes decisions after they are committed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from fleet.store.db import make_session_factory
from fleet.store.errors import AlreadyExists, MissingReference, NotFound
from fleet.store.uow import SqlUnitOfWork
from tests.store import builders
from tests.store.builders import NOW, digest

WAIT = 10  # seconds; only reached when something is broken


def test_sequences_start_at_one_and_increase(uow: SqlUnitOfWork, device_id: str) -> None:
    with uow:
        allocated = [uow.director.next_sequence(device_id) for _ in range(3)]
        uow.commit()
    with uow:
        allocated.append(uow.director.next_sequence(device_id))
    assert allocated == [1, 2, 3, 4]


def test_a_rolled_back_allocation_is_reused(uow: SqlUnitOfWork, device_id: str) -> None:
    # Safe because nothing signed with it was stored, so nothing was ever published.
    with uow:
        assert uow.director.next_sequence(device_id) == 1
    with uow:
        assert uow.director.next_sequence(device_id) == 1


def test_allocating_for_an_unknown_device_is_not_found(uow: SqlUnitOfWork) -> None:
    with uow, pytest.raises(NotFound):
        uow.director.next_sequence("nobody")


def test_a_sequence_is_stored_once_per_device(uow: SqlUnitOfWork, device_id: str) -> None:
    with uow:
        uow.director.add(builders.director_record(1))
        with pytest.raises(AlreadyExists):
            uow.director.add(builders.director_record(1, envelope_json="{}"))


def test_a_decision_must_name_a_known_release(uow: SqlUnitOfWork, device_id: str) -> None:
    with uow, pytest.raises(MissingReference):
        uow.director.add(builders.director_record(1, release_digest=digest("unsigned")))


def test_unpublished_records_come_oldest_first_until_marked(
    uow: SqlUnitOfWork, device_id: str
) -> None:
    with uow:
        uow.devices.add(builders.device("dev-2"))
        uow.director.add(builders.director_record(1))
        uow.director.add(builders.director_record(1, device_id="dev-2"))
        uow.director.add(builders.director_record(2))
        uow.commit()
    with uow:
        pending = [(r.device_id, r.sequence) for r in uow.director.unpublished()]
        assert pending == [(device_id, 1), ("dev-2", 1), (device_id, 2)]
        uow.director.mark_published(device_id, 1, at=NOW + timedelta(seconds=1))
        uow.commit()
    with uow:
        pending = [(r.device_id, r.sequence) for r in uow.director.unpublished(limit=1)]
        assert pending == [("dev-2", 1)]
        latest = uow.director.latest(device_id)
        assert latest is not None
        assert latest.sequence == 2


def test_published_records_keep_when_they_went_out(uow: SqlUnitOfWork, device_id: str) -> None:
    with uow:
        uow.director.add(builders.director_record(1))
        uow.director.mark_published(device_id, 1, at=NOW + timedelta(seconds=1))
        uow.commit()
    with uow:
        latest = uow.director.latest(device_id)
    assert latest is not None
    assert latest.published_at == NOW + timedelta(seconds=1)


def test_marking_an_unknown_record_is_not_found(uow: SqlUnitOfWork, device_id: str) -> None:
    with uow, pytest.raises(NotFound):
        uow.director.mark_published(device_id, 99, at=NOW)


def test_concurrent_replicas_never_share_a_sequence(
    session_factory: Callable[[], Session], device_id: str
) -> None:
    def allocate_many() -> list[int]:
        allocated = []
        for _ in range(20):
            with SqlUnitOfWork(session_factory) as uow:
                allocated.append(uow.director.next_sequence(device_id))
                uow.commit()
        return allocated

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(allocate_many) for _ in range(2)]
        first, second = (run.result(timeout=WAIT) for run in runs)
    assert first == sorted(first)
    assert second == sorted(second)
    assert sorted(first + second) == list(range(1, 41))


def test_a_second_replica_waits_for_the_first_to_commit(
    postgres_engine: Engine,
) -> None:
    session_factory = make_session_factory(postgres_engine)
    device_id = builders.seed_device(SqlUnitOfWork(session_factory))
    allocated_first = threading.Event()
    commit_first = threading.Event()

    def first_replica() -> int:
        with SqlUnitOfWork(session_factory) as uow:
            sequence = uow.director.next_sequence(device_id)
            allocated_first.set()
            commit_first.wait(WAIT)
            uow.commit()
        return sequence

    def second_replica() -> int:
        with SqlUnitOfWork(session_factory) as uow:
            sequence = uow.director.next_sequence(device_id)
            uow.commit()
        return sequence

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(first_replica)
        assert allocated_first.wait(WAIT)
        second = pool.submit(second_replica)
        _wait_for_a_lock_wait(postgres_engine)
        assert not second.done()
        commit_first.set()
        assert (first.result(WAIT), second.result(WAIT)) == (1, 2)


def _wait_for_a_lock_wait(engine: Engine) -> None:
    """Until some session of this database is blocked on a row lock."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + WAIT
    with engine.connect() as connection:
        while connection.execute(query).scalar_one() == 0:
            if time.monotonic() > deadline:
                pytest.fail("the second allocation never waited for the first")
            time.sleep(0.01)
            connection.rollback()
