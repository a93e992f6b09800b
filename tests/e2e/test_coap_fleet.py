"""A mixed fleet: half the devices on MQTT + HTTP, half on CoAP, one signed release.

The CoAP half observes ``/m/{id}``, downloads Block2 from ``/a/{sha}`` and posts status
to ``/s/{id}``; a second scenario runs CoAP devices behind a relay that drops 20 % of
the datagrams each way. Convergence is judged by what the server recorded.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

from device_sim.fleet import with_coap_share
from fleet.client import AdminClient
from fleet.local_setup import ArtifactFile, LocalServer, Trust, running_server, sign_release
from tests.e2e.fleet_run import (
    DEVICE_CLASS,
    eventually,
    fleet_for,
    issue_coap_keys,
    make_device_keys,
    raise_file_limit,
    run_until,
    server_sees_all_healthy,
    server_states,
)

pytestmark = pytest.mark.slow


def _release(client: AdminClient, trust: Trust, directory: Path) -> str:
    """Firmware and thresholds only: the model gate is not what this test is about."""
    artifacts = {
        "firmware.bin": ArtifactFile(
            "firmware", "kws-fw", "1.0.0", 1, "application/octet-stream", os.urandom(24 * 1024)
        ),
        "thresholds.json": ArtifactFile(
            "thresholds", "kws-thresholds", "1.0.0", 1, "application/json", b'{"score": 0.8}'
        ),
    }
    for artifact in artifacts.values():
        client.upload_artifact(artifact.data, media_type=artifact.media_type)
    envelope = sign_release(
        trust, directory, name="kws", version="1.0.0", device_class=DEVICE_CLASS,
        artifacts=artifacts,
    )  # fmt: skip
    return client.register_release(envelope.read_bytes())


def _assign_release(local: LocalServer, trust: Trust, tmp_path: Path, devices: int) -> str:
    enrollment = make_device_keys(tmp_path / "devices", devices)
    with AdminClient(local.base_url, local.admin_token) as client:
        client.create_device_class(DEVICE_CLASS, ram_bytes=256 * 1024, flash_bytes=1024 * 1024)
        ids = client.enroll(enrollment.read_bytes())["ids"]
        issue_coap_keys(client, ids, enrollment.parent)
        digest = _release(client, trust, tmp_path / "release")
        assert client.assign(digest, ids)["count"] == devices
    return digest


def _converge(
    local: LocalServer,
    trust: Trust,
    tmp_path: Path,
    digest: str,
    *,
    coap_share: float,
    coap_loss: float = 0.0,
) -> float:
    fleet = fleet_for(
        local.mqtt_url, local.base_url, tmp_path / "devices", trust.root, coap=local.coap_url
    )
    fleet.devices = with_coap_share(fleet.devices, coap_share)
    fleet.coap_loss = coap_loss
    fleet.coap_ack_timeout = 0.1 if coap_loss else 0.5
    count = len(fleet.devices)
    started = time.monotonic()
    with AdminClient(local.base_url, local.admin_token) as client:
        reached = run_until(
            fleet,
            lambda _view: server_sees_all_healthy(client, digest, count),
            timeout=90,
        )
        assert reached, (fleet.view.counts(), server_states(client))
        elapsed = time.monotonic() - started
        assert eventually(lambda: server_sees_all_healthy(client, digest, count), timeout=5)
    transports = Counter(spec.transport for spec in fleet.devices)
    stats = fleet.coap_loss_stats
    print(f"{dict(transports)} converged in {elapsed:.1f} s; relay: {stats}")
    if coap_loss:
        assert stats is not None and stats.dropped > coap_loss / 2 * stats.forwarded
    return elapsed


def test_a_mixed_mqtt_and_coap_fleet_converges(trust: Trust, tmp_path: Path) -> None:
    raise_file_limit()
    with running_server(trust, tmp_path / "server") as local:
        digest = _assign_release(local, trust, tmp_path, 200)
        _converge(local, trust, tmp_path, digest, coap_share=0.5)
        metrics = _metrics(local)
        assert metrics['fleet_coap_requests_total{resource="s"}'] >= 100


def test_coap_devices_converge_under_twenty_percent_packet_loss(
    trust: Trust, tmp_path: Path
) -> None:
    with running_server(trust, tmp_path / "server") as local:
        digest = _assign_release(local, trust, tmp_path, 20)
        _converge(local, trust, tmp_path, digest, coap_share=1.0, coap_loss=0.2)


def _metrics(local: LocalServer) -> dict[str, float]:
    import httpx

    text = httpx.get(f"{local.base_url}/metrics", timeout=5).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
