"""``fleet serve`` as a real child process, so a test can SIGKILL or SIGTERM it mid-work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fleet.local_setup import Trust
from fleet.transports.embedded_broker import free_port


@dataclass
class ServerProcess:
    trust: Trust
    data_dir: Path
    mqtt_url: str
    admin_token: str
    database_url: str | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)  # more FLEET_* settings
    log_level: str = "WARNING"

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"server-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            "FLEET_DATA_DIR": str(self.data_dir),
            "FLEET_MQTT_URL": self.mqtt_url,
            "FLEET_ROOT_PATH": str(self.trust.root),
            "FLEET_DIRECTOR_KEY_PATH": str(self.trust.director_key),
            "FLEET_BOOTSTRAP_ADMIN_TOKEN": self.admin_token,
            "FLEET_HTTP_PORT": str(self.port),
            "FLEET_COAP_PORT": "0",
            **self.env,
        }
        if self.database_url:
            env["FLEET_DATABASE_URL"] = self.database_url
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fleet.cli", "serve", "--log-level", self.log_level],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"fleet serve exited with {self.process.returncode}:\n"
                    + self.log_path.read_text(errors="replace")[-4000:]
                )
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("fleet serve was not ready (/readyz) in time")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing; what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, *, timeout: float = 30.0) -> tuple[int, float]:
        """SIGTERM, as an orchestrator stops a replica; its exit code and how long it
        took to exit."""
        assert self.process is not None and self.process.poll() is None
        started = time.monotonic()
        self.process.terminate()
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - started

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def replicas(
    trust: Trust, data_dir: Path, *, mqtt_url: str, admin_token: str, database_url: str
) -> list[ServerProcess]:
    """Two replicas, ``fleet-a`` and ``fleet-b``: one database (their PostgreSQL
    application names), one data volume, their own MQTT client ids."""
    return [
        ServerProcess(
            trust=trust,
            data_dir=data_dir,
            mqtt_url=mqtt_url,
            admin_token=admin_token,
            database_url=f"{database_url}?application_name=fleet-{name}",
            env={"FLEET_MQTT_CLIENT_ID": f"fleet-server-{name}"},
        )
        for name in ("a", "b")
    ]
