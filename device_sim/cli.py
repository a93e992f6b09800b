"""``fleet-sim``: enroll and run fleets of simulated devices against a tinyfleet server.

Exit codes: 0 success (``run``: the target was reached, or no target was set), 1 ``run``
timed out before reaching ``--until-healthy``, 2 unusable input.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import semver
import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from device_sim.faults import FAULT_NAMES, Faults
from device_sim.fleet import (
    BROKER_LOGINS,
    BROKER_LOGINS_FILE,
    COAP_KEYS,
    COAP_KEYS_FILE,
    ENROLLMENT,
    BrokerLoginEntry,
    Endpoints,
    EnrollmentEntry,
    Fleet,
    FleetView,
    load_enrollment,
    require_coap_keys,
    with_coap_share,
)
from device_sim.wire import SERVER_API_PREFIX
from schemas.common import DeviceId, Name
from schemas.oscore import OscoreKeys
from schemas.provisioning import ProvisioningBundle
from signer.constraints import DeviceCapabilities
from signer.errors import Refusal
from signer.fileio import InputError, read_envelope
from signer.keys import KeyFileError, SigningKey, save_signing_key, signing_key_from_pem

__all__ = ["app", "main"]

app = typer.Typer(
    name="fleet-sim",
    help="Simulated tinyfleet devices: enroll keys, run fleets with fault injection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)
_DEVICE_ID: TypeAdapter[str] = TypeAdapter(DeviceId)
_NAME: TypeAdapter[str] = TypeAdapter(Name)
DIGEST = re.compile(r"[0-9a-f]{64}")
STATE_ORDER = (
    "unreported",
    "idle",
    "refused",
    "notified",
    "downloading",
    "downloaded",
    "verifying",
    "installing",
    "rebooting",
    "healthy",
    "failed",
    "rolled_back",
)


@contextmanager
def _outcome() -> Iterator[None]:
    """Expected failures become a message and exit code 2; anything else is a bug."""
    try:
        yield
    except (InputError, KeyFileError, ValueError, OSError) as exc:
        stderr.print(Text(f"error: {exc}", style="red"))
        raise typer.Exit(2) from exc
    except Refusal as exc:
        stderr.print(Text(f"refused ({exc.code}): {exc}", style="red"))
        raise typer.Exit(2) from exc


def _device_id(prefix: str, index: int, width: int) -> str:
    device_id = f"{prefix}-{index:0{width}d}"
    try:
        return _DEVICE_ID.validate_python(device_id)
    except ValidationError as exc:
        raise InputError(f"device id {device_id!r} is not valid; choose another --prefix") from exc


@app.command()
def keys(
    devices: Annotated[int, typer.Option("--devices", min=1, help="How many devices.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for keys and devices.json.")],
    device_class: Annotated[str, typer.Option("--class", help="Device class of every device.")],
    prefix: Annotated[str, typer.Option("--prefix", help="Ids are PREFIX-00001, …")] = "dev",
    tags: Annotated[list[str] | None, typer.Option("--tag", help="Tag every device.")] = None,
) -> None:
    """Generate device keys (DIR/ID.key, DIR/ID.key.pub) and DIR/devices.json to enroll."""
    with _outcome():
        try:
            _NAME.validate_python(device_class)
        except ValidationError as exc:
            raise InputError(f"--class {device_class!r}: letters, digits, '._+-' only") from exc
        enrollment = out_dir / "devices.json"
        if enrollment.exists():
            raise InputError(f"{enrollment} exists; refusing to overwrite an enrollment")
        out_dir.mkdir(parents=True, exist_ok=True)
        width = max(5, len(str(devices)))
        entries = []
        for index in range(1, devices + 1):
            device_id = _device_id(prefix, index, width)
            key = SigningKey.generate()
            save_signing_key(key, out_dir / f"{device_id}.key")
            entries.append(
                EnrollmentEntry(
                    id=device_id,
                    device_class=device_class,
                    public_key=key.public.public,
                    tags=tuple(tags or ()),
                )
            )
        enrollment.write_bytes(ENROLLMENT.dump_json(entries, indent=2) + b"\n")
        stdout.print(Text(f"{devices} device keys and {enrollment} written"))


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data + b"\n")


@app.command()
def unpack(
    bundles: Annotated[
        list[Path], typer.Argument(help="Provisioning bundles (POST .../provision answers).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="A new directory for the devices.")],
) -> None:
    """Turn provisioning bundles into a keys directory `fleet-sim run` starts: DIR/ID.key,
    DIR/devices.json, DIR/broker-logins.json and DIR/coap-keys.json (0600) and
    DIR/root.json, the root to pin."""
    with _outcome():
        read = [(path, _read_bundle(path)) for path in bundles]
        roots = {b.root.payload for _, b in read}
        if len(roots) != 1:
            raise InputError("the bundles pin different roots: unpack each set on its own")
        if (out_dir / "devices.json").exists():
            raise InputError(f"{out_dir / 'devices.json'} exists; refusing to overwrite it")
        out_dir.mkdir(parents=True, exist_ok=True)
        entries, logins = [], []
        coap_keys: dict[str, OscoreKeys] = {}
        for path, bundle in read:
            if bundle.private_key_pem is None:
                raise InputError(
                    f"{path}: {bundle.device_id} made its own key; a simulated device needs "
                    "a bundle with the key the server made"
                )
            key = signing_key_from_pem(bundle.private_key_pem.encode(), source=str(path))
            save_signing_key(key, out_dir / f"{bundle.device_id}.key")
            entries.append(
                EnrollmentEntry(
                    id=bundle.device_id,
                    device_class=bundle.device_class,
                    public_key=bundle.public_key,
                    tags=bundle.tags,
                )
            )
            if bundle.broker.password is not None:
                logins.append(
                    BrokerLoginEntry(
                        username=bundle.broker.username,
                        client_id=bundle.broker.client_id,
                        password=bundle.broker.password,
                    )
                )
            if bundle.coap_keys is not None:
                coap_keys[bundle.device_id] = bundle.coap_keys
        if logins:
            _write_secret(out_dir / BROKER_LOGINS_FILE, BROKER_LOGINS.dump_json(logins, indent=2))
        if coap_keys:
            _write_secret(out_dir / COAP_KEYS_FILE, COAP_KEYS.dump_json(coap_keys, indent=2))
        (out_dir / "root.json").write_bytes(read[0][1].root.to_bytes())
        (out_dir / "devices.json").write_bytes(ENROLLMENT.dump_json(entries, indent=2) + b"\n")
        first = read[0][1]
        stdout.print(
            Text(
                f"{len(entries)} devices in {out_dir}; start them with: fleet-sim run --keys "
                f"{out_dir} --root {out_dir / 'root.json'} --mqtt {first.broker.url} "
                f"--http {first.http_base}"
            )
        )


def _read_bundle(path: Path) -> ProvisioningBundle:
    try:
        return ProvisioningBundle.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise InputError(f"{path} is not a provisioning bundle: {exc.errors()[0]['msg']}") from exc


def _mqtt_endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise InputError(f"--mqtt {url!r}: expected mqtt://host:port (TLS is not simulated)")
    return parts.hostname, parts.port or 1883


def _http_base(url: str) -> str:
    """A server's URL (no path) gets the admin API's prefix; a URL with a path is a mirror."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--http {url!r}: expected http://host:port")
    base = url.rstrip("/")
    return base if parts.path.strip("/") else f"{base}{SERVER_API_PREFIX}"


def _coap_uri(url: str | None, share: float) -> str | None:
    if url is None:
        if share > 0.0:
            raise InputError("--coap-share needs --coap coap://host:port")
        return None
    parts = urlsplit(url)
    if parts.scheme != "coap" or not parts.hostname:
        raise InputError(f"--coap {url!r}: expected coap://host:port (DTLS is not simulated)")
    return f"coap://{parts.hostname}:{parts.port or 5683}"


def _raise_file_limit(devices: int) -> None:
    """About 3 descriptors per device (MQTT socket, HTTP socket, files); ask for room."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 4 * devices + 256)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _state_rank(name: str) -> tuple[int, str]:
    state = name.split(" ", 1)[0]
    return (STATE_ORDER.index(state) if state in STATE_ORDER else len(STATE_ORDER), name)


def _counts_table(view: FleetView, target: str | None) -> Table:
    counts = view.counts()
    table = Table(title=f"{view.total} devices", title_justify="left")
    table.add_column("state")
    table.add_column("devices", justify="right")
    for state in sorted(counts, key=lambda name: _state_rank(name)):
        table.add_row(state, str(counts[state]))
    if target is not None:
        table.add_section()
        table.add_row(f"healthy on {target[:12]}…", f"{view.healthy_on(target)}/{view.total}")
    if view.restarts:
        table.add_row("power-loss restarts", str(view.restarts))
    return table


def _display(view: FleetView, target: str | None, started: float) -> RenderableType:
    elapsed = Text(f"elapsed {time.monotonic() - started:5.1f} s", style="dim")
    return Group(_counts_table(view, target), elapsed)


async def _run_fleet(fleet: Fleet, target: str | None, min_healthy: float, timeout: float) -> bool:
    needed = max(1, round(min_healthy * len(fleet.devices)))

    def reached(view: FleetView) -> bool:
        return target is not None and view.healthy_on(target) >= needed

    started = time.monotonic()
    with Live(_display(fleet.view, target, started), console=stderr, refresh_per_second=4) as live:
        run = asyncio.create_task(fleet.run(until=reached if target else None, timeout=timeout))
        while not run.done():
            live.update(_display(fleet.view, target, started))
            await asyncio.wait({run}, timeout=0.25)
        live.update(_display(fleet.view, target, started))
    return run.result()


@app.command()
def run(
    keys_dir: Annotated[Path, typer.Option("--keys", help="A `fleet-sim keys` directory.")],
    root: Annotated[Path, typer.Option("--root", help="Root envelope to pin (root.json).")],
    mqtt: Annotated[str, typer.Option("--mqtt", help="Broker: mqtt://host:port.")],
    http: Annotated[
        str,
        typer.Option(
            "--http",
            help="The tinyfleet server (http://host:port; devices fetch from /api/v1/artifacts),"
            " or a mirror's base URL with its path (http://cdn/fw: /fw/artifacts).",
        ),
    ],
    devices: Annotated[int | None, typer.Option("--devices", min=1, help="First N.")] = None,
    coap: Annotated[
        str | None, typer.Option("--coap", help="CoAP server: coap://host:port.")
    ] = None,
    coap_share: Annotated[
        float,
        typer.Option("--coap-share", min=0.0, max=1.0, help="Share of devices on CoAP."),
    ] = 0.0,
    coap_loss: Annotated[
        float,
        typer.Option("--coap-loss", min=0.0, max=0.9, help="CoAP datagrams dropped each way."),
    ] = 0.0,
    coap_ack_timeout: Annotated[
        float,
        typer.Option("--coap-ack-timeout", min=0.01, help="Seconds before a CoAP retransmission."),
    ] = 0.5,
    faults: Annotated[
        list[str] | None,
        typer.Option("--fault", help=f"NAME[=P], repeatable; NAME is {', '.join(FAULT_NAMES)}."),
    ] = None,
    until_healthy: Annotated[
        str | None, typer.Option("--until-healthy", help="Stop once devices run this release.")
    ] = None,
    min_healthy: Annotated[
        float, typer.Option("--min-healthy", min=0.0, max=1.0, help="Share that must be healthy.")
    ] = 1.0,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds.")] = 120.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every device's RNG.")] = 0,
    state_dir: Annotated[
        Path | None, typer.Option("--state", help="Device state (default KEYS/state).")
    ] = None,
    fsync: Annotated[bool, typer.Option("--fsync/--no-fsync", help="fsync state saves.")] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="Python log level.")] = "ERROR",
    firmware_version: Annotated[
        str,
        typer.Option("--firmware-version", help="Factory firmware (SemVer) each device runs."),
    ] = "1.0.0",
    ram_bytes: Annotated[
        int | None, typer.Option("--ram-bytes", min=0, help="RAM a device checks releases by.")
    ] = None,
    flash_bytes: Annotated[
        int | None,
        typer.Option("--flash-bytes", min=0, help="Update-slot size a device checks releases by."),
    ] = None,
    ops: Annotated[
        list[str] | None,
        typer.Option("--op", help="An op the devices' resolver holds, repeatable (default: any)."),
    ] = None,
) -> None:
    """Run the enrolled devices until --until-healthy is reached or --timeout passes.

    Each device refuses a release whose signed constraints it does not meet
    (docs/protocol.md §8 step 8): the firmware it runs (--firmware-version until a release
    with firmware is installed), and --ram-bytes, --flash-bytes, --op when given."""
    with _outcome():
        logging.basicConfig(
            level=log_level.upper(), handlers=[RichHandler(console=stderr)], format="%(message)s"
        )
        if until_healthy is not None and not DIGEST.fullmatch(until_healthy):
            raise InputError(f"--until-healthy {until_healthy!r}: expected a sha256, 64 hex digits")
        if not semver.Version.is_valid(firmware_version):
            raise InputError(f"--firmware-version {firmware_version!r}: not a SemVer version")
        specs = load_enrollment(keys_dir)
        if devices is not None and devices > len(specs):
            raise InputError(f"--devices {devices}: {keys_dir} enrolls only {len(specs)}")
        specs = with_coap_share(specs[:devices], coap_share)
        require_coap_keys(specs)
        host, port = _mqtt_endpoint(mqtt)
        fleet = Fleet(
            devices=specs,
            state_root=state_dir or keys_dir / "state",
            root=read_envelope(root, what="root"),
            endpoints=Endpoints(
                mqtt_host=host,
                mqtt_port=port,
                http_base=_http_base(http),
                coap_uri=_coap_uri(coap, coap_share),
            ),
            clock=lambda: datetime.now(UTC),
            faults=Faults.parse(faults or ()),
            seed=seed,
            fsync=fsync,
            coap_loss=coap_loss,
            coap_ack_timeout=coap_ack_timeout,
            capabilities=DeviceCapabilities(
                firmware_version=firmware_version,
                ops=frozenset(ops) if ops else None,
                ram_bytes=ram_bytes,
                flash_bytes=flash_bytes,
            ),
        )
        _raise_file_limit(len(specs))
    reached = asyncio.run(_run_fleet(fleet, until_healthy, min_healthy, timeout))
    stdout.print(_counts_table(fleet.view, until_healthy))
    if until_healthy is not None and not reached:
        stderr.print(Text(f"target not reached within {timeout:g} s", style="red"))
        raise typer.Exit(1)


def main() -> None:
    app()
