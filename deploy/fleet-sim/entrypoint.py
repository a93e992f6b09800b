"""Entry point of the compose stack's ``fleet-sim`` service: one simulated fleet per
container, so ``docker compose up --scale fleet-sim=N`` runs N fleets side by side.

1. ``fleet-sim keys`` makes ``SIM_DEVICES`` device keys under ``SIM_DIR``, ids
   ``<prefix>-00001``…, the prefix being ``SIM_PREFIX`` or the container's hostname (so
   scaled containers never share an id); kept across restarts of the container;
2. waits for the server (``FLEET_URL``) to answer ``/healthz``, creates the device class
   ``SIM_DEVICE_CLASS`` unless it exists, and enrolls the devices with ``FLEET_TOKEN``
   (an operator token); a restart finds them enrolled and goes on;
3. saves the broker logins the enrollment answered with (shown that once) as
   ``broker-logins.json`` beside the keys, where ``fleet-sim run`` reads them; a restart
   that finds the devices enrolled but no saved logins (it stopped in between) asks the
   server for a new login per device;
4. replaces itself with ``fleet-sim run`` against ``SIM_MQTT_URL`` and ``FLEET_URL`` for
   ``SIM_RUN_SECONDS`` (default a year); arguments given to the container (``--fault
   flaky-link=0.1``, ``--coap ...``) are passed on to it.

The devices then idle until a release is assigned to them through the admin API.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from device_sim.fleet import BROKER_LOGINS_FILE
from fleet.client import AdminClient, ApiError

_NOT_IN_AN_ID = re.compile(r"[^A-Za-z0-9._-]+")


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if not value:
        sys.exit(f"fleet-sim service: set {name}")
    return value


def _prefix() -> str:
    prefix = _NOT_IN_AN_ID.sub("-", os.environ.get("SIM_PREFIX") or socket.gethostname())
    return prefix.strip("-._")[:40] or "sim"


def _keys(directory: Path, devices: int, device_class: str) -> None:
    if (directory / "devices.json").exists():
        return
    subprocess.run(
        ["fleet-sim", "keys", "--devices", str(devices), "--out", str(directory),
         "--class", device_class, "--prefix", _prefix()],
        check=True,
    )  # fmt: skip


def _wait_for(base_url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(f"{base_url.rstrip('/')}/healthz", timeout=5).raise_for_status()
            return
        except httpx.HTTPError as exc:
            if time.monotonic() > deadline:
                sys.exit(f"fleet-sim service: {base_url} did not answer /healthz: {exc}")
            time.sleep(1)


def _enroll(client: AdminClient, directory: Path, device_class: str) -> None:
    try:
        client.create_device_class(
            device_class,
            ram_bytes=int(_env("SIM_RAM_BYTES", "262144")),
            flash_bytes=int(_env("SIM_FLASH_BYTES", "1048576")),
        )
    except ApiError as exc:
        if exc.code != "conflict":
            raise
    enrollment = (directory / "devices.json").read_bytes()
    logins = directory / BROKER_LOGINS_FILE
    try:
        _save(logins, client.enroll(enrollment)["broker_logins"])
    except ApiError as exc:
        if exc.code != "conflict":
            raise
        # A restart: every device must already be enrolled, and under our key.
        entries = json.loads(enrollment)
        for entry in entries:
            if client.device(entry["id"])["public_key"] != entry["public_key"]:
                raise
        if not logins.exists():
            _save(logins, _new_logins(client, [entry["id"] for entry in entries]))
    sys.stderr.write(f"fleet-sim service: {directory} enrolled as {_prefix()}-*\n")


def _new_logins(client: AdminClient, ids: list[str]) -> list[object]:
    try:
        return [client.new_broker_login(device_id) for device_id in ids]
    except ApiError as exc:
        if exc.code == "broker_logins_unmanaged":
            return []  # the broker takes devices without a password
        raise


def _save(path: Path, logins: list[object]) -> None:
    """Atomically, so a crash leaves the old file or the new one, never half of it."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(logins))
    os.chmod(partial, 0o600)
    os.replace(partial, path)


def main() -> None:
    base_url = _env("FLEET_URL")
    directory = Path(_env("SIM_DIR", "/var/lib/fleet-sim"))
    device_class = _env("SIM_DEVICE_CLASS", "sim-nrf52840")
    _keys(directory, int(_env("SIM_DEVICES", "50")), device_class)
    _wait_for(base_url, float(_env("SIM_WAIT_SECONDS", "120")))
    with AdminClient(base_url, _env("FLEET_TOKEN")) as client:
        _enroll(client, directory, device_class)
    command = [
        "fleet-sim", "run", "--keys", str(directory), "--root", _env("SIM_ROOT"),
        "--mqtt", _env("SIM_MQTT_URL"), "--http", base_url,
        "--timeout", _env("SIM_RUN_SECONDS", str(365 * 86_400)), *sys.argv[1:],
    ]  # fmt: skip
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
