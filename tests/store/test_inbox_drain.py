"""Stopping the server drains the device inbox: every report it had received is
ingested before the worker stops (SQLite and PostgreSQL), not left in the queue."""

from __future__ import annotations

import queue

from sqlalchemy import Engine

from fleet.observability import Metrics
from fleet.transports.mqtt_fleet import DeviceMessage
from fleet.workers import DeviceInbox
from tests.store.signed_reports import enroll_signed, signed_status, status_events, uow_factory

REPORTS = 400


def test_drain_ingests_every_received_report_before_stopping(engine: Engine) -> None:
    keys = enroll_signed(engine, REPORTS)
    inbox: queue.Queue[DeviceMessage] = queue.Queue()
    for device_id, key in keys.items():
        message = signed_status(device_id, key, 1)
        inbox.put(DeviceMessage("status", device_id, message.payload, message.received_at))
    worker = DeviceInbox(uow_factory(engine), inbox, metrics=Metrics(), batch_size=50)
    worker.start()

    assert worker.drain(timeout=30)

    assert inbox.empty()
    assert status_events(engine) == REPORTS
