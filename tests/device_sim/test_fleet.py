"""Fleets: the runner converges many devices; the CLI enrolls them and exits by itself."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_sim.cli import _http_base, app
from device_sim.fleet import Endpoints, Fleet, FleetView, load_enrollment
from fleet.transports.embedded_broker import Broker
from schemas import DeviceState, StatusReport
from signer.fileio import InputError
from signer.keys import load_public_key
from tests.device_sim.conftest import FAST_RETRIES
from tests.device_sim.director import START, Director, ServerClient
from tests.support.artifact_server import ArtifactServer

runner = CliRunner()


def _enroll(directory: Path, count: int) -> list[str]:
    result = runner.invoke(
        app,
        ["keys", "--devices", str(count), "--out", str(directory), "--class", "nrf52840-kws"],
    )
    assert result.exit_code == 0, result.output
    return [spec.device_id for spec in load_enrollment(directory)]


def test_keys_writes_an_enrollment_file_and_one_key_pair_per_device(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["keys", "--devices", "3", "--out", str(tmp_path), "--class", "stm32-vww", "--tag", "lab"],
    )
    assert result.exit_code == 0, result.output
    entries = json.loads((tmp_path / "devices.json").read_text())
    assert [e["id"] for e in entries] == ["dev-00001", "dev-00002", "dev-00003"]
    for entry in entries:
        assert set(entry) == {"id", "device_class", "public_key", "tags"}
        assert entry["device_class"] == "stm32-vww" and entry["tags"] == ["lab"]
        public = load_public_key(tmp_path / f"{entry['id']}.key.pub")
        assert entry["public_key"] == public.public
        assert (tmp_path / f"{entry['id']}.key").stat().st_mode & 0o777 == 0o600

    again = runner.invoke(
        app, ["keys", "--devices", "1", "--out", str(tmp_path), "--class", "stm32-vww"]
    )
    assert again.exit_code == 2, "an enrollment is never overwritten"


async def test_fifty_devices_converge(
    mosquitto: Broker, artifacts: ArtifactServer, server: ServerClient, tmp_path: Path
) -> None:
    director = Director()
    release = director.release("2.0.0", security_version=2, size=32 * 1024)
    for blob in release.blobs.values():
        artifacts.add(blob)
    device_ids = _enroll(tmp_path / "keys", 50)
    for device_id in device_ids:
        server.publish_desired(device_id, director.delivery(device_id, release))
    fleet = Fleet(
        devices=load_enrollment(tmp_path / "keys"),
        state_root=tmp_path / "state",
        root=director.root,
        endpoints=Endpoints(mosquitto.host, mosquitto.port, artifacts.base_url),
        clock=lambda: START,
        fetch_policy=FAST_RETRIES,
    )

    started = time.monotonic()
    reached = await fleet.run(until=lambda v: v.healthy_on(release.digest) == 50, timeout=20)
    elapsed = time.monotonic() - started

    assert reached, fleet.view.counts()
    assert elapsed < 20
    keys = {d: load_public_key(tmp_path / "keys" / f"{d}.key.pub") for d in device_ids}

    def finals() -> dict[str, StatusReport]:  # verified signatures
        return {d: server.statuses(d, keys[d])[-1] for d in device_ids}

    # The fleet stops as soon as every device has *sent* healthy; the broker may still be
    # delivering the last reports to this test's subscriber.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        r.state != DeviceState.HEALTHY for r in finals().values()
    ):
        await asyncio.sleep(0.05)
    assert {r.state for r in finals().values()} == {DeviceState.HEALTHY}
    assert {r.running_release_digest for r in finals().values()} == {release.digest}


def test_run_exits_nonzero_when_the_target_is_not_reached_in_time(
    mosquitto: Broker, artifacts: ArtifactServer, server: ServerClient, tmp_path: Path
) -> None:
    director = Director(now=datetime.now(UTC))  # the CLI's devices run on the real clock
    release = director.release("2.0.0")
    for blob in release.blobs.values():
        artifacts.add(blob)
    keys = tmp_path / "keys"
    device_ids = _enroll(keys, 3)
    for device_id in device_ids[:2]:  # the third device is never told
        server.publish_desired(device_id, director.delivery(device_id, release))
    (tmp_path / "root.json").write_bytes(director.root.to_bytes())
    base = [
        "run",
        *("--keys", str(keys), "--root", str(tmp_path / "root.json")),
        *("--mqtt", mosquitto.url, "--http", artifacts.base_url),
        *("--until-healthy", release.digest),
    ]

    partial = runner.invoke(app, [*base, "--min-healthy", "0.6", "--timeout", "10"])
    assert partial.exit_code == 0, partial.output
    assert "healthy" in partial.stdout

    everyone = runner.invoke(app, [*base, "--timeout", "1"])
    assert everyone.exit_code == 1, everyone.output


def test_fleet_view_counts_devices_that_never_reported() -> None:
    view = FleetView(total=3)
    assert view.counts() == {"unreported": 3}


@pytest.mark.parametrize(
    ("given", "devices_fetch_from"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v1"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/api/v1"),
        ("http://127.0.0.1:8080/api/v1", "http://127.0.0.1:8080/api/v1"),
        ("https://cdn.example/fw/", "https://cdn.example/fw"),
    ],
)
def test_http_option_takes_the_server_url_and_finds_the_api_itself(
    given: str, devices_fetch_from: str
) -> None:
    assert _http_base(given) == devices_fetch_from


def test_http_option_refuses_what_is_not_an_http_url() -> None:
    with pytest.raises(InputError, match="expected http://host:port"):
        _http_base("ftp://127.0.0.1:8080")


def test_run_refuses_coap_devices_without_oscore_keys_naming_them(tmp_path: Path) -> None:
    _enroll(tmp_path, 2)
    root = tmp_path / "root.json"
    root.write_text("{}")  # never read: the keys are checked first

    result = runner.invoke(
        app,
        [
            "run", "--keys", str(tmp_path), "--root", str(root),
            "--mqtt", "mqtt://127.0.0.1:1", "--http", "http://127.0.0.1:1",
            "--coap", "coap://127.0.0.1:5683", "--coap-share", "1",
        ],
    )  # fmt: skip

    assert result.exit_code == 2, result.output
    assert "need their OSCORE keys" in result.output
    assert "dev-00001" in result.output
