"""A Mosquitto the server (or a test) starts itself, rendered from ``deploy/mosquitto/``.

``fleet serve`` uses it when no ``FLEET_MQTT_URL`` is set; the tests' ``mosquitto``
fixture (``tests/conftest.py``) uses it on a free port. Always stopped on exit::

    with running_mosquitto(tmp_path) as broker:
        client.connect(broker.host, broker.port)
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import string
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ACL",
    "TEMPLATE",
    "Broker",
    "BrokerStartError",
    "Dynsec",
    "find_dynsec_plugin",
    "find_mosquitto",
    "free_port",
    "running_mosquitto",
]

# A link to deploy/mosquitto, so the installed package carries the configs we ship.
DEPLOY = Path(__file__).resolve().parent / "broker_config"
TEMPLATE = DEPLOY / "mosquitto.conf.template"
DYNSEC_TEMPLATE = DEPLOY / "mosquitto.dynsec.conf.template"
ACL = DEPLOY / "acl"
HOST = "127.0.0.1"
# Where Debian and the eclipse-mosquitto image put the dynamic security plugin.
DYNSEC_PLUGINS = (
    Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"),
    Path("/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so"),
    Path("/usr/lib/mosquitto_dynamic_security.so"),
)


@dataclass(frozen=True)
class Dynsec:
    """Start the broker with the dynamic security plugin, from this starting config
    (``fleet.transports.dynsec.initial_config``)."""

    config: dict[str, Any]


class BrokerStartError(RuntimeError):
    """Mosquitto exited or did not accept connections in time; the message has its log."""


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    # The loopback listener for server replicas: client ids are their own, not the username.
    server_port: int = 0

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def server_url(self, username: str = "fleet-server") -> str:
        return f"mqtt://{username}@{HOST}:{self.server_port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


SBIN = (Path("/usr/sbin/mosquitto"), Path("/usr/local/sbin/mosquitto"))


def find_mosquitto() -> str | None:
    """``mosquitto`` on PATH, or in an sbin directory that is often not on PATH."""
    return shutil.which("mosquitto") or next((str(p) for p in SBIN if p.exists()), None)


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_dynsec_plugin() -> Path | None:
    return next((p for p in DYNSEC_PLUGINS if p.exists()), None)


def _render(directory: Path, port: int, server_port: int, dynsec: Dynsec | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    common = {"port": port, "bind_address": HOST, "server_port": server_port}
    if dynsec is None:
        acl = directory / "acl"
        shutil.copyfile(ACL, acl)
        text = string.Template(TEMPLATE.read_text()).substitute(
            common, acl_file=str(acl), user=getpass.getuser()
        )
    else:
        plugin = find_dynsec_plugin()
        if plugin is None:
            raise BrokerStartError("no mosquitto_dynamic_security.so (apt-get install mosquitto)")
        state = directory / "dynamic-security.json"
        state.write_text(json.dumps(dynsec.config, indent=1))
        text = string.Template(DYNSEC_TEMPLATE.read_text()).substitute(
            common, user=getpass.getuser(), dynsec_plugin=plugin, dynsec_file=state
        )
    config = directory / "mosquitto.conf"
    config.write_text(text)
    return config


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _start(
    binary: str, directory: Path, timeout: float, port: int, dynsec: Dynsec | None
) -> Broker:
    server_port = free_port()
    config = _render(directory, port, server_port, dynsec)
    log = directory / "mosquitto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    broker = Broker(host=HOST, port=port, log=log, process=process, server_port=server_port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerStartError(
                f"mosquitto exited with {process.returncode}:\n{broker.log_text()}"
            )
        if _accepts(port) and _accepts(server_port):
            return broker
        time.sleep(0.02)
    _stop(process)
    raise BrokerStartError(
        f"mosquitto did not listen on {port} in {timeout} s:\n{broker.log_text()}"
    )


@contextmanager
def running_mosquitto(
    directory: Path,
    *,
    port: int | None = None,
    binary: str | None = None,
    timeout: float = 10.0,
    attempts: int = 3,
    dynsec: Dynsec | None = None,
) -> Iterator[Broker]:
    """Start Mosquitto with the dev config (anonymous, the ACL file), or with the
    dynamic security plugin; stop it however the block ends.

    Without ``port`` it takes a free one; as a free port can be taken between choosing
    it and Mosquitto binding it, a start that fails is tried again on another port.
    """
    binary = binary or find_mosquitto()
    if binary is None:
        raise BrokerStartError("no mosquitto binary found (apt-get install mosquitto)")
    attempts = 1 if port is not None else attempts
    for attempt in range(1, attempts + 1):
        try:
            chosen = port if port is not None else free_port()
            broker = _start(binary, directory / f"run-{attempt}", timeout, chosen, dynsec)
            break
        except BrokerStartError:
            if attempt == attempts:
                raise
    try:
        yield broker
    finally:
        _stop(broker.process)
