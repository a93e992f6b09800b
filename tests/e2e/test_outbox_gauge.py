"""`fleet_outbox_pending` is what an operator alerts on when manifests stop going out.

The broker is stopped under a running server: assignments still queue their manifests,
the gauge shows them waiting, and once the broker is back it falls to 0.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from fleet.client import AdminClient
from fleet.local_setup import Trust, running_server
from fleet.transports.embedded_broker import Broker, find_mosquitto
from tests.e2e.fleet_run import DEVICE_CLASS, eventually, make_device_keys
from tests.e2e.telemetry_field import metric
from tests.e2e.test_mqtt_delivery import register_signed_release

DEVICES = 5


def test_the_gauge_counts_manifests_the_broker_has_not_taken_and_falls_once_it_does(
    trust: Trust, mosquitto: Broker, tmp_path: Path
) -> None:
    keys = make_device_keys(tmp_path / "devices", DEVICES)
    with (
        running_server(trust, tmp_path / "server", mqtt_url=mosquitto.server_url()) as local,
        AdminClient(local.base_url, local.admin_token) as client,
    ):
        client.create_device_class(DEVICE_CLASS, ram_bytes=262_144, flash_bytes=1_048_576)
        ids = client.enroll(keys.read_bytes())["ids"]
        digest = register_signed_release(client, trust, tmp_path / "r1", "1.0.0")
        mosquitto.process.terminate()
        mosquitto.process.wait(timeout=5)
        restarted: subprocess.Popen[bytes] | None = None
        try:
            client.assign(digest, ids)
            stuck = eventually(
                lambda: metric(local.base_url, "fleet_outbox_pending") == DEVICES, timeout=20
            )
            assert stuck, metric(local.base_url, "fleet_outbox_pending")

            binary = find_mosquitto()
            assert binary is not None
            config = mosquitto.log.parent / "mosquitto.conf"
            restarted = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)
            drained = eventually(
                lambda: metric(local.base_url, "fleet_outbox_pending") == 0, timeout=60
            )
            assert drained, metric(local.base_url, "fleet_outbox_pending")
            assert metric(local.base_url, "fleet_director_manifests_published_total") >= DEVICES
        finally:
            if restarted is not None:
                restarted.terminate()
                restarted.wait(timeout=5)
