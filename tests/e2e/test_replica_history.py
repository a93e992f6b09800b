"""Two replicas share one device's messages; its status history must lose none of them.

The broker's shared subscription hands a device's reports to whichever replica is free,
so a report can be committed after a later one. Before the replay window
(``fleet.domain.replay_window``), a run like this one dropped 30 % of the reports as
``replayed`` on one replica (docs/operations.md, section 5.4).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from fleet.client import AdminClient
from fleet.local_setup import Trust
from fleet.transports.embedded_broker import Broker
from schemas import StatusReport
from tests.e2e.fleet_run import (
    DEVICE_CLASS,
    eventually,
    fleet_for,
    make_device_keys,
    raise_file_limit,
    run_until,
)
from tests.e2e.server_process import ServerProcess
from tests.e2e.server_process import replicas as make_replicas
from tests.e2e.telemetry_field import metric
from tests.e2e.test_mqtt_delivery import register_signed_release
from tests.support.postgres import throwaway_database

DEVICES = 200


@pytest.fixture
def database_url() -> Iterator[str]:
    """Replicas share a PostgreSQL database; SQLite serves one process."""
    with throwaway_database("tinyfleet_replicas") as url:
        yield url


def _dropped_as_replayed(replica: ServerProcess) -> float:
    label = 'fleet_device_messages_dropped_total{kind="status",reason="replayed"}'
    return metric(replica.base_url, re.escape(label))


def _recorded_reports(database_url: str) -> set[tuple[str, int]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT device_id, counter FROM status_event"))
            return {(device_id, counter) for device_id, counter in rows}
    finally:
        engine.dispose()


def test_two_replicas_record_every_status_report_a_fleet_sends(
    trust: Trust, mosquitto: Broker, tmp_path: Path, database_url: str
) -> None:
    raise_file_limit()
    keys = tmp_path / "devices"
    make_device_keys(keys, DEVICES)
    token = "tf_" + secrets.token_urlsafe(32)
    replicas = make_replicas(
        trust,
        tmp_path / "server",
        mqtt_url=mosquitto.server_url(),
        admin_token=token,
        database_url=database_url,
    )
    for replica in replicas:
        replica.start()
    sent: list[StatusReport] = []
    try:
        with AdminClient(replicas[0].base_url, token) as client:
            client.create_device_class(DEVICE_CLASS, ram_bytes=262_144, flash_bytes=1_048_576)
            ids = client.enroll((keys / "devices.json").read_bytes())["ids"]
            digest = register_signed_release(client, trust, tmp_path / "r1", "1.0.0")
            client.assign(digest, ids)
        fleet = fleet_for(mosquitto.url, replicas[1].base_url, keys, trust.root)
        fleet.observers.append(sent.append)
        started = time.monotonic()
        assert run_until(fleet, lambda v: v.healthy_on(digest) == DEVICES, timeout=120)

        expected = {(r.device_id, r.counter) for r in sent}
        recorded_all = eventually(lambda: _recorded_reports(database_url) == expected, timeout=30)
        replayed = [_dropped_as_replayed(r) for r in replicas]
        print(
            f"{DEVICES} devices, 2 replicas: {len(sent)} reports sent, "
            f"{len(_recorded_reports(database_url))} recorded, "
            f"dropped as replayed {replayed}, {time.monotonic() - started:.1f} s"
        )
        assert recorded_all, expected ^ _recorded_reports(database_url)
        assert replayed == [0.0, 0.0]
        assert {device_id for device_id, _ in expected} == set(ids)
    finally:
        for replica in replicas:
            replica.stop()
