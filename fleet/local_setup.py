"""Building blocks for a whole local deployment: offline trust, a running server.

Used by ``fleet demo``, the end-to-end tests and the benchmarks, so all three drive
the product the way an operator does: the offline steps run the real ``fleet-sign`` and
``fleet-sim`` commands, and the server is the one ``fleet serve`` builds.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from fleet.app import FleetServer, build_server, utc_now
from fleet.http_server import serving
from fleet.settings import Settings
from schemas import FirmwareDeclaration

__all__ = [
    "ArtifactFile",
    "LocalServer",
    "Trust",
    "create_trust",
    "run_tool",
    "running_server",
    "sign_release",
]


def run_tool(tool: str, *args: str | Path, cwd: Path | None = None) -> str:
    """Run one of our console scripts; raise with its stderr if it fails."""
    executable = shutil.which(tool) or str(Path(sys.executable).with_name(tool))
    done = subprocess.run(
        [executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(map(str, args[:2]))} failed:\n{done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Trust:
    """The offline side: key files and the signed root (docs/architecture.md §2)."""

    keys: Path
    root: Path

    @property
    def director_key(self) -> Path:
        return self.keys / "director.key"

    def release_key(self, index: int) -> Path:
        return self.keys / f"release-{index}.key"


def create_trust(directory: Path) -> Trust:
    """Root 1-of-1, release 2-of-3, director 1-of-1, made with ``fleet-sign``."""
    keys = directory / "keys"
    for name in ("root", "release-1", "release-2", "release-3", "director"):
        run_tool("fleet-sign", "keygen", name, "--dir", keys)
    trust = Trust(keys=keys, root=directory / "root.json")
    run_tool(
        "fleet-sign", "root", "init",
        "--root-key", keys / "root.key.pub", "--root-threshold", "1",
        "--release-key", keys / "release-1.key.pub",
        "--release-key", keys / "release-2.key.pub",
        "--release-key", keys / "release-3.key.pub", "--release-threshold", "2",
        "--director-key", keys / "director.key.pub", "--director-threshold", "1",
        "--sign-with", keys / "root.key", "--out", trust.root,
    )  # fmt: skip
    return trust


@dataclass(frozen=True)
class ArtifactFile:
    kind: str
    name: str
    version: str
    security_version: int
    media_type: str
    data: bytes
    firmware: FirmwareDeclaration | None = None  # what a firmware image offers a model


def _toml(value: object) -> str:
    """A JSON value as TOML: JSON's strings, numbers and booleans are TOML's too."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)


def sign_release(
    trust: Trust,
    directory: Path,
    *,
    name: str,
    version: str,
    device_class: str,
    artifacts: Mapping[str, ArtifactFile],
    signers: tuple[int, ...] = (1, 2),
) -> Path:
    """Write the artifacts and a spec, and sign the release with ``fleet-sign release``."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f'name = "{name}"', f'version = "{version}"', f'device_class = "{device_class}"']
    for filename, artifact in artifacts.items():
        (directory / filename).write_bytes(artifact.data)
        lines += [
            "",
            "[[components]]",
            f'kind = "{artifact.kind}"',
            f'name = "{artifact.name}"',
            f'version = "{artifact.version}"',
            f"security_version = {artifact.security_version}",
            f'media_type = "{artifact.media_type}"',
            f'file = "{filename}"',
        ]
        if artifact.firmware is not None:
            declared = artifact.firmware.model_dump(mode="json", exclude_none=True)
            lines += ["[components.firmware]", *(f"{k} = {_toml(v)}" for k, v in declared.items())]
    spec = directory / "release.toml"
    spec.write_text("\n".join(lines) + "\n")
    out = directory / "release.json"
    keys = [arg for i in signers for arg in ("--key", str(trust.release_key(i)))]
    run_tool("fleet-sign", "release", spec, *keys, "--out", out)
    return out


@dataclass(frozen=True)
class LocalServer:
    server: FleetServer
    base_url: str
    admin_token: str

    @property
    def mqtt_url(self) -> str:
        endpoint = self.server.mqtt_endpoint
        return f"mqtt://{endpoint.host}:{endpoint.port}"

    @property
    def coap_url(self) -> str:
        coap = self.server.coap
        assert coap is not None, "the server runs CoAP"
        return f"coap://{coap.host}:{coap.port}"

    @property
    def device_http_base(self) -> str:
        """What devices prefix to ``/artifacts/{sha256}``."""
        return f"{self.base_url}/api/v1"


@contextmanager
def serve_in_process(
    settings: Settings, *, clock: Callable[[], datetime] | None = None
) -> Iterator[tuple[FleetServer, str]]:
    """``fleet serve`` with ``settings`` in this process, on ``clock`` if given (tests and
    benches move it); yields the server and its API's base URL, and stops both."""
    server = build_server(settings, clock=clock or utc_now)
    server.start()
    try:
        with serving(server.api) as base_url:
            yield server, base_url
    finally:
        server.stop()


@contextmanager
def running_server(
    trust: Trust,
    data_dir: Path,
    *,
    database_url: str | None = None,
    mqtt_url: str | None = None,
    broker_accounts: Literal["none", "dynsec"] = "none",
    public_mqtt_url: str | None = None,
) -> Iterator[LocalServer]:
    """``fleet serve`` in this process: embedded broker unless ``mqtt_url`` is given."""
    token = "tf_" + secrets.token_urlsafe(32)
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        mqtt_url=mqtt_url,
        root_path=trust.root,
        director_key_path=trust.director_key,
        bootstrap_admin_token=token,
        coap_port=0,
        broker_accounts=broker_accounts,
        public_mqtt_url=public_mqtt_url,
    )
    with serve_in_process(settings) as (server, base_url):
        yield LocalServer(server=server, base_url=base_url, admin_token=token)
