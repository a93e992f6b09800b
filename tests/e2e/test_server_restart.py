"""The server is SIGKILLed twice mid-delivery; after restarts every device converges.

The first kill lands right after the assignment, while director manifests may still sit
in the outbox; the second lands while devices are downloading from the server. The
broker keeps the server's persistent session, so status reports sent during the outage
reach the restarted server.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import pytest

from fleet.client import AdminClient
from fleet.local_setup import Trust
from fleet.transports.embedded_broker import Broker
from tests.e2e.fleet_run import (
    DEVICE_CLASS,
    eventually,
    fleet_for,
    make_device_keys,
    raise_file_limit,
    run_until,
    server_sees_all_healthy,
    server_states,
)
from tests.e2e.server_process import ServerProcess
from tests.e2e.test_mqtt_delivery import register_signed_release

pytestmark = pytest.mark.slow
DEVICES = 200


def test_every_device_converges_across_two_server_crashes(
    trust: Trust, mosquitto: Broker, tmp_path: Path
) -> None:
    raise_file_limit()
    enrollment = make_device_keys(tmp_path / "devices", DEVICES)
    server = ServerProcess(
        trust=trust,
        data_dir=tmp_path / "server",
        mqtt_url=f"mqtt://fleet-server@{mosquitto.host}:{mosquitto.port}",
        admin_token="tf_" + secrets.token_urlsafe(32),
    )
    server.start()
    try:
        with AdminClient(server.base_url, server.admin_token) as client:
            client.create_device_class(DEVICE_CLASS, ram_bytes=262_144, flash_bytes=1_048_576)
            ids = client.enroll(enrollment.read_bytes())["ids"]
            digest = register_signed_release(client, trust, tmp_path / "release", "1.0.0")
            client.assign(digest, ids)
        server.kill()
        server.start()

        fleet = fleet_for(mosquitto.url, server.base_url, tmp_path / "devices", trust.root)
        outcome: dict[str, bool] = {}
        runner = threading.Thread(
            target=lambda: outcome.setdefault(
                "reached",
                run_until(fleet, lambda v: v.healthy_on(digest) == DEVICES, timeout=150),
            )
        )
        runner.start()
        deadline = time.monotonic() + 60
        while fleet.view.counts().get("downloading", 0) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()
        time.sleep(1.0)
        server.start()
        runner.join()
        assert outcome.get("reached"), fleet.view.counts()

        with AdminClient(server.base_url, server.admin_token) as client:
            assert eventually(
                lambda: server_sees_all_healthy(client, digest, DEVICES), timeout=30
            ), server_states(client)
    finally:
        server.stop()
