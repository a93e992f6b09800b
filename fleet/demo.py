"""``fleet demo``: the whole product on one machine, the way an operator drives it.

1. offline: ``fleet-sign`` makes keys, a root (2-of-3 release keys) and a signed release;
2. ``fleet serve`` on embedded defaults (SQLite, blobs and a Mosquitto it starts itself);
3. ``fleet-sim keys`` makes a simulated fleet, enrolled through the admin API;
4. the release is registered and assigned; the devices verify, install and report;
5. staged rollouts: a bad release caught in its canary wave and rolled back, then a
   good one through every wave (fleet/demo_rollouts.py);
6. a summary of the fleet as the server sees it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from device_sim.fleet import Endpoints, Fleet, FleetView, load_enrollment
from fleet.client import AdminClient
from fleet.demo_rollouts import canary_with_a_failure, run_rollout
from fleet.local_setup import ArtifactFile, create_trust, run_tool, running_server, sign_release
from fleet.observability import configure_logging
from fleet.toolkit.packaged import firmware_for, packaged_card, packaged_model, packaged_thresholds
from fleet.transports.mqtt import MqttEndpoint
from signer.fileio import read_envelope

__all__ = ["run_demo"]

DEVICE_CLASS = "nrf52840-kws"
_console = Console(highlight=False)


def _artifacts() -> dict[str, ArtifactFile]:
    """A real int8 model (the packaged gesture bundle) and a firmware declaring what the
    model needs, so the server's release checks (docs/models.md) let it through."""
    firmware = firmware_for(packaged_card())
    return {
        "firmware.bin": ArtifactFile(
            "firmware", "kws-fw", "2.1.0", 3, "application/octet-stream", os.urandom(48 * 1024),
            firmware=firmware,
        ),
        "model.tflite": ArtifactFile(
            "model", "kws-model", "1.0.0", 1, "application/vnd.tflite", packaged_model()
        ),
        "thresholds.json": ArtifactFile(
            "thresholds", "kws-thresholds", "1.0.0", 1, "application/json",
            packaged_thresholds(),
        ),
    }  # fmt: skip


def _progress(view: FleetView, digest: str, started: float) -> Table:
    table = Table(title=f"fleet after {time.monotonic() - started:4.1f} s")
    table.add_column("device state")
    table.add_column("devices", justify="right")
    for state, count in sorted(view.counts().items()):
        table.add_row(state, str(count))
    table.add_row("[bold]healthy on the new release", f"[bold]{view.healthy_on(digest)}")
    return table


async def _roll_out(fleet: Fleet, digest: str, timeout: float) -> bool:
    started = time.monotonic()
    target = len(fleet.devices)
    with Live(_progress(fleet.view, digest, started), console=_console) as live:
        run = asyncio.create_task(
            fleet.run(until=lambda v: v.healthy_on(digest) == target, timeout=timeout)
        )
        while not run.done():
            live.update(_progress(fleet.view, digest, started))
            await asyncio.wait({run}, timeout=0.25)
        live.update(_progress(fleet.view, digest, started))
    _console.print()
    return run.result()


def _server_summary(client: AdminClient) -> Counter[str]:
    return Counter(
        f"{d['state']} on {(d['running_release'] or 'nothing')[:12]}" for d in client.devices()
    )


def run_demo(*, devices: int, data_dir: Path | None, timeout: float) -> int:
    configure_logging("WARNING")
    workdir = data_dir or Path(tempfile.mkdtemp(prefix="tinyfleet-demo-"))
    _console.rule("1. offline: keys, root (2-of-3 release keys), signed release")
    trust = create_trust(workdir / "offline")
    artifacts = _artifacts()
    envelope = sign_release(
        trust,
        workdir / "offline" / "release",
        name="kws",
        version="2.1.0",
        device_class=DEVICE_CLASS,
        artifacts=artifacts,
    )
    _console.print(run_tool("fleet-sign", "verify", "--root", trust.root, envelope).strip())
    _console.rule("2. fleet serve on embedded defaults")
    with running_server(trust, workdir / "server") as local:
        _console.print(f"admin API {local.base_url}/api/v1/docs   MQTT {local.mqtt_url}")
        keys = workdir / "devices"
        run_tool("fleet-sim", "keys", "--devices", str(devices), "--out", keys,
                 "--class", DEVICE_CLASS)  # fmt: skip
        with AdminClient(local.base_url, local.admin_token) as client:
            _console.rule(f"3. enroll {devices} simulated devices, upload, register, assign")
            client.create_device_class(DEVICE_CLASS, ram_bytes=256 * 1024, flash_bytes=1 << 20)
            ids = client.enroll((keys / "devices.json").read_bytes())["ids"]
            for artifact in artifacts.values():
                client.upload_artifact(artifact.data, media_type=artifact.media_type)
            digest = client.register_release(envelope.read_bytes())
            client.assign(digest, ids)
            _console.print(f"release {digest[:16]}… assigned to {len(ids)} devices")
            _console.rule("4. devices verify, download, install and report over MQTT")
            mqtt = MqttEndpoint.parse(local.mqtt_url)
            fleet = Fleet(
                devices=load_enrollment(keys),
                state_root=keys / "state",
                root=read_envelope(trust.root, what="root"),
                endpoints=Endpoints(mqtt.host, mqtt.port, local.device_http_base),
                clock=lambda: datetime.now(UTC),
            )
            reached = asyncio.run(_roll_out(fleet, digest, timeout))
            for version, bad in (("2.2.0", True), ("2.3.0", False)):
                what = "a bad release (does not boot on 30 % of devices)" if bad else "a good one"
                _console.rule(f"staged rollout of {version}, {what}: waves 10 % → 50 % → 100 %")
                release = client.register_release(
                    sign_release(trust, workdir / "offline" / version, name="kws",
                                 version=version, device_class=DEVICE_CLASS,
                                 artifacts=artifacts).read_bytes()
                )  # fmt: skip
                rollout_id = f"kws-{version}"
                if bad:
                    rollout_id = canary_with_a_failure(ids, release, prefix=rollout_id)
                    _console.print(f"rollout {rollout_id}: its canary holds a failing device")
                reached = reached and run_rollout(
                    _console, client, fleet, release=release, rollout_id=rollout_id,
                    device_class=DEVICE_CLASS, bad=bad, back_to=digest, timeout=timeout,
                )  # fmt: skip
                digest = digest if bad else release
            time.sleep(1.0)  # the last status reports are still in flight to the server
            _console.rule("5. the fleet as the server sees it")
            for line, count in sorted(_server_summary(client).items()):
                _console.print(f"{count:6d}  {line}")
    _console.print(f"state kept in {workdir}")
    return 0 if reached else 1
