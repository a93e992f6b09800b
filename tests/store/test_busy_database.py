"""A busy database delays device reports and never loses them (real PostgreSQL).

Two server replicas ingest overlapping batches of status reports at once (a shared MQTT
subscription splits one device's messages between them). Updating device rows in
arrival order deadlocked them, and the device inbox then dropped the whole batch: a
canary's "healthy" vanished and its rollout waited forever. Here the deadlock, the lock
wait and the retry are real: two connections, a row lock held from a third, and
PostgreSQL's own ``lock_timeout``.
"""

from __future__ import annotations

import queue
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import Engine, text
from sqlmodel import Session

from fleet.observability import Metrics
from fleet.store import StoreUnavailable
from fleet.store.db import make_engine
from fleet.transports.mqtt_fleet import DeviceMessage
from fleet.workers import DeviceInbox
from tests.store.signed_reports import (
    enroll_signed,
    ingest_at_once,
    signed_status,
    status_events,
    uow_factory,
)

DEVICES = 60


def test_a_deadlock_is_reported_as_store_unavailable(postgres_engine: Engine) -> None:
    enroll_signed(postgres_engine, 2)
    new_uow = uow_factory(postgres_engine)
    both_hold_one = threading.Barrier(2, timeout=10)
    raised: list[BaseException] = []

    def update(first: str, second: str) -> None:
        try:
            with new_uow() as uow:
                uow.devices.set_online(first, True, at=datetime.now(UTC))
                both_hold_one.wait()
                uow.devices.set_online(second, True, at=datetime.now(UTC))
                uow.commit()
        except BaseException as exc:
            raised.append(exc)

    threads = [
        threading.Thread(target=update, args=("dev-000", "dev-001")),
        threading.Thread(target=update, args=("dev-001", "dev-000")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(raised) == 1, raised  # PostgreSQL aborts one of the two; the other commits
    (error,) = raised
    assert isinstance(error, StoreUnavailable), repr(error)
    assert "40P01" in str(error)  # deadlock_detected, and no SQL in the message
    assert "UPDATE" not in str(error)


def test_overlapping_batches_from_two_replicas_do_not_deadlock(postgres_engine: Engine) -> None:
    keys = enroll_signed(postgres_engine, DEVICES)
    ids = sorted(keys)
    forward = [signed_status(d, keys[d], 1) for d in ids]
    backward = [signed_status(d, keys[d], 2) for d in reversed(ids)]
    accepted = ingest_at_once(postgres_engine, forward, backward)

    # A counter-1 report that lost the race to counter 2 is late, and still recorded.
    assert sum(accepted) == 2 * DEVICES
    assert status_events(postgres_engine) == sum(accepted)


def test_the_inbox_keeps_a_batch_the_database_could_not_take_and_ingests_it_later(
    postgres_engine: Engine,
) -> None:
    keys = enroll_signed(postgres_engine, 3)
    # The worker's own engine gives up on a row lock after 200 ms, as PostgreSQL does
    # for a deadlock victim: an OperationalError, nothing committed.
    impatient = make_engine(
        postgres_engine.url.update_query_dict({"options": "-c lock_timeout=200"})
    )
    inbox: queue.Queue[DeviceMessage] = queue.Queue()
    metrics = Metrics()
    worker = DeviceInbox(uow_factory(impatient), inbox, metrics=metrics)
    blocker = Session(postgres_engine)
    try:
        blocker.execute(text("SELECT id FROM device WHERE id = 'dev-001' FOR UPDATE"))
        for device_id, key in keys.items():
            message = signed_status(device_id, key, 7)
            inbox.put(DeviceMessage("status", device_id, message.payload, message.received_at))
        worker.start()
        time.sleep(1.5)  # several attempts, each stopped by the held row lock
        assert status_events(postgres_engine) == 0
        blocker.rollback()
        deadline = time.monotonic() + 15
        while status_events(postgres_engine) < len(keys) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        blocker.close()
        worker.stop()
        impatient.dispose()

    assert status_events(postgres_engine) == len(keys)
    sample = metrics.registry.get_sample_value
    assert sample("fleet_worker_failures_total", {"worker": "device_inbox"}) in (None, 0.0)
    dropped = sample(
        "fleet_device_messages_dropped_total", {"kind": "status", "reason": "replayed"}
    )
    assert dropped in (None, 0.0)
