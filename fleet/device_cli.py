"""``fleet device provision|coap-keys|revoke``: the device lifecycle through the admin API.

The server URL and token come from ``--url``/``--token`` or ``FLEET_URL``/``FLEET_TOKEN``.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from fleet.client import AdminClient, ApiError
from signer.keys import KeyFileError, load_public_key

__all__ = ["device_app"]

device_app = typer.Typer(no_args_is_help=True, help="provision and revoke devices")
_err = Console(stderr=True)

Url = Annotated[str, typer.Option("--url", envvar="FLEET_URL", help="the server")]
Token = Annotated[str, typer.Option("--token", envvar="FLEET_TOKEN", help="an API token")]


def _call(url: str, token: str, method: str, path: str, **kwargs: Any) -> Any:
    try:
        with AdminClient(url, token) as client:
            return client.call(method, path, **kwargs)
    except ApiError as exc:
        _err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:
        _err.print(f"[red]error:[/] cannot reach {url}: {exc}")
        raise typer.Exit(1) from exc


@device_app.command("provision")
def provision(
    device_id: Annotated[str, typer.Argument(help="the new device's id")],
    device_class: Annotated[str, typer.Option("--class", help="its device class")],
    out: Annotated[Path, typer.Option(help="where to write the bundle (created 0600)")],
    url: Url,
    token: Token,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="repeatable")] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(help="the .pub of a key the device made; default: the server makes one"),
    ] = None,
    calibration: Annotated[
        Path | None, typer.Option(help="the device's initial calibration (at most 1 MiB)")
    ] = None,
) -> None:
    """Enroll one device and write its provisioning bundle: keypair, broker login, root
    to pin, URLs, calibration. The bundle holds secrets shown nowhere else."""
    if out.exists():
        _err.print(f"[red]error:[/] {out} exists; a bundle is never overwritten")
        raise typer.Exit(2)
    body: dict[str, Any] = {"device_class": device_class, "tags": tags or []}
    try:
        if public_key is not None:
            body["public_key"] = load_public_key(public_key).public
        if calibration is not None:
            body["calibration_base64"] = base64.b64encode(calibration.read_bytes()).decode()
    except (KeyFileError, OSError) as exc:
        _err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    bundle = _call(url, token, "POST", f"/devices/{device_id}/provision", json=body)
    _write_secret(out, bundle)
    _err.print(f"{device_id} enrolled; bundle written to {out}")


@device_app.command("coap-keys")
def coap_keys(
    device_id: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Option(help="where to write the keys (created 0600)")],
    url: Url,
    token: Token,
) -> None:
    """New OSCORE keys for the device's CoAP requests; its old keys stop working within
    5 s. The keys are shown nowhere else."""
    if out.exists():
        _err.print(f"[red]error:[/] {out} exists; keys are never overwritten")
        raise typer.Exit(2)
    keys = _call(url, token, "POST", f"/devices/{device_id}/coap-keys")
    _write_secret(out, keys)
    _err.print(f"{device_id}: new CoAP keys (kid {keys['device_kid']}) written to {out}")


def _write_secret(path: Path, document: Any) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(document, file, indent=2)
        file.write("\n")


@device_app.command("revoke")
def revoke(device_id: Annotated[str, typer.Argument()], url: Url, token: Token) -> None:
    """Cut a device off: broker login disabled, signed messages refused, out of any
    rollout. There is no un-revoke."""
    device = _call(url, token, "POST", f"/devices/{device_id}/revoke")
    _err.print(f"{device_id} revoked at {device['revoked_at']}")
