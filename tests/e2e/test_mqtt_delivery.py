"""The first end-to-end slice: operator → server → MQTT → 200 simulated devices → server.

A release signed offline by ``fleet-sign`` is registered and assigned through the admin
API; the server's director signs per-device manifests and publishes them on a real
Mosquitto; every device verifies, installs and reports; the test then reads the fleet's
state back from the server, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleet.client import AdminClient
from fleet.local_setup import ArtifactFile, Trust, running_server, sign_release
from fleet.toolkit.packaged import firmware_for, packaged_card, packaged_model, packaged_thresholds
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

pytestmark = pytest.mark.slow
DEVICES = 200


def release_artifacts(version: str) -> dict[str, ArtifactFile]:
    """A real int8 model and a firmware declaring what it needs: the server checks the fit."""
    return {
        "firmware.bin": ArtifactFile(
            "firmware", "kws-fw", version, 1, "application/octet-stream",
            os.urandom(24 * 1024), firmware=firmware_for(packaged_card()),
        ),
        "model.tflite": ArtifactFile(
            "model", "kws-model", version, 1, "application/vnd.tflite", packaged_model()
        ),
        "thresholds.json": ArtifactFile(
            "thresholds", "kws-thresholds", version, 1, "application/json",
            packaged_thresholds(),
        ),
    }  # fmt: skip


def register_signed_release(
    client: AdminClient, trust: Trust, directory: Path, version: str
) -> str:
    artifacts = release_artifacts(version)
    for artifact in artifacts.values():
        client.upload_artifact(artifact.data, media_type=artifact.media_type)
    envelope = sign_release(
        trust,
        directory,
        name="kws",
        version=version,
        device_class=DEVICE_CLASS,
        artifacts=artifacts,
    )
    return client.register_release(envelope.read_bytes())


def test_two_hundred_devices_install_a_signed_release_over_mqtt(
    trust: Trust, database_url: str | None, mosquitto: Broker, tmp_path: Path
) -> None:
    raise_file_limit()
    enrollment = make_device_keys(tmp_path / "devices", DEVICES)
    with (
        running_server(
            trust,
            tmp_path / "server",
            database_url=database_url,
            mqtt_url=f"mqtt://fleet-server@{mosquitto.host}:{mosquitto.port}",
        ) as local,
        AdminClient(local.base_url, local.admin_token) as client,
    ):
        client.create_device_class(DEVICE_CLASS, ram_bytes=256 * 1024, flash_bytes=1024 * 1024)
        ids = client.enroll(enrollment.read_bytes())["ids"]
        digest = register_signed_release(client, trust, tmp_path / "release", "1.0.0")
        assert client.assign(digest, ids)["count"] == DEVICES

        fleet = fleet_for(local.mqtt_url, local.base_url, tmp_path / "devices", trust.root)
        reached = run_until(fleet, lambda v: v.healthy_on(digest) == DEVICES, timeout=120)
        assert reached, fleet.view.counts()

        assert eventually(lambda: server_sees_all_healthy(client, digest, DEVICES), timeout=30), (
            server_states(client)
        )
        for device in client.devices():
            versions = {c["kind"]: c["version"] for c in device["components"]}
            assert versions["firmware"] == "1.0.0"
            assert versions["model"] == "1.0.0"
