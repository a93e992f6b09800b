"""Run a simulated fleet (device_sim) against a local server until a condition holds."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from device_sim.faults import Faults
from device_sim.fleet import (
    COAP_KEYS,
    COAP_KEYS_FILE,
    Endpoints,
    Fleet,
    FleetView,
    load_enrollment,
)
from fleet.client import AdminClient, ApiError
from fleet.local_setup import run_tool
from fleet.transports.mqtt import MqttEndpoint
from schemas.oscore import OscoreKeys
from signer.fileio import read_envelope

DEVICE_CLASS = "nrf52840-kws"


def make_device_keys(directory: Path, count: int, *, device_class: str = DEVICE_CLASS) -> Path:
    run_tool("fleet-sim", "keys", "--devices", str(count), "--out", directory,
             "--class", device_class)  # fmt: skip
    return directory / "devices.json"


def issue_coap_keys(client: AdminClient, device_ids: list[str], keys_dir: Path) -> None:
    """OSCORE keys for each device, saved where ``load_enrollment`` finds them."""
    issued: dict[str, OscoreKeys] = {}
    for device_id in device_ids:
        while True:
            try:
                issued[device_id] = OscoreKeys.model_validate(client.new_coap_keys(device_id))
                break
            except ApiError as exc:  # the admin API's per-token rate: wait for the window
                if exc.status != 429:
                    raise
                time.sleep(0.5)
    (keys_dir / COAP_KEYS_FILE).write_bytes(COAP_KEYS.dump_json(issued))


def fleet_for(
    mqtt_url: str,
    server_url: str,
    keys_dir: Path,
    root: Path,
    *,
    faults: Faults | None = None,
    devices: slice = slice(None),
    state_dir: Path | None = None,
    coap: str | None = None,
) -> Fleet:
    """Devices of a ``fleet-sim keys`` directory, talking to a server at ``server_url``."""
    endpoint = MqttEndpoint.parse(mqtt_url)
    return Fleet(
        devices=load_enrollment(keys_dir)[devices],
        state_root=state_dir or keys_dir / "state",
        root=read_envelope(root, what="root"),
        endpoints=Endpoints(endpoint.host, endpoint.port, f"{server_url}/api/v1", coap),
        clock=lambda: datetime.now(UTC),
        faults=faults or Faults(),
    )


def run_until(fleet: Fleet, until: Callable[[FleetView], bool], *, timeout: float) -> bool:
    return asyncio.run(fleet.run(until=until, timeout=timeout))


def raise_file_limit() -> None:
    """A few hundred devices hold two sockets each and a state file."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 8192)
    if soft < wanted and os.name == "posix":
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def eventually(check: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def server_states(client: AdminClient) -> Counter[str]:
    """The fleet as the server sees it: state and running release per device."""
    return Counter(f"{d['state']}:{(d['running_release'] or 'none')[:8]}" for d in client.devices())


def server_sees_all_healthy(client: AdminClient, digest: str, count: int) -> bool:
    return server_states(client) == Counter({f"healthy:{digest[:8]}": count})


async def _run_together(fleets: list[Fleet], until: Callable[[], bool], timeout: float) -> bool:
    runs = [asyncio.create_task(f.run(until=lambda _v: until(), timeout=timeout)) for f in fleets]
    results = await asyncio.gather(*runs)
    return all(results)


def run_fleets_until(fleets: list[Fleet], until: Callable[[], bool], *, timeout: float) -> bool:
    """Run several fleets (e.g. with different fault knobs) in one loop until ``until()``."""
    return asyncio.run(_run_together(fleets, until, timeout))
