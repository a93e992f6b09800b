"""The image's file layout without Docker: the builder stage's build context copied as
the Dockerfile copies it, the wheel built from it, a fresh venv with
requirements/server.lock (hash-checked) and the wheel (--no-deps), then ``fleet serve``
started from that venv on SQLite and its embedded broker. The venv is built once per
session; how long it took is reported at the end of the run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from packaging.markers import Marker

from fleet.local_setup import Trust, create_trust
from fleet.transports.dynsec import initial_config
from fleet.transports.embedded_broker import (
    Dynsec,
    find_dynsec_plugin,
    find_mosquitto,
    free_port,
    running_mosquitto,
)
from tests.deploy.conftest import FIGURES
from tests.deploy.dockerfile import DOCKERFILE, ROOT, instructions, stages

BUILDER = stages(instructions(DOCKERFILE.read_text()))["builder"]
SERVER = stages(instructions(DOCKERFILE.read_text()))["server"]
LOCK = ROOT / "requirements" / "server.lock"


@dataclass(frozen=True)
class ImageVenv:
    root: Path
    workdir: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self, **settings: str) -> dict[str, str]:
        """The image's environment: its venv first on PATH, nothing of this checkout."""
        kept = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("FLEET_", "PYTHON", "VIRTUAL_ENV"))
        }
        return {**kept, "PATH": f"{self.bin}{os.pathsep}{kept.get('PATH', '')}", **settings}

    def run(
        self, *args: str | Path, timeout: float = 120, **settings: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(arg) for arg in args], cwd=self.workdir, env=self.env(**settings),
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip


def _timed(figures: dict[str, float], name: str, *command: str | Path, cwd: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    )  # fmt: skip
    figures[name] = time.monotonic() - started
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def _build_context(into: Path) -> Path:
    """What the builder stage COPYs from the context, links kept as links."""
    for copy in BUILDER:
        words = copy.args.split()
        if copy.keyword != "COPY" or any(w.startswith("--from=") for w in words):
            continue
        for source in words[:-1]:
            target = into / source
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source, target, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )  # fmt: skip
            else:
                shutil.copy2(ROOT / source, target)
    return into


@pytest.fixture(scope="session")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> ImageVenv:
    base = tmp_path_factory.mktemp("image")
    context = _build_context(base / "src")
    figures: dict[str, float] = {}
    _timed(figures, "wheel", sys.executable, "-m", "pip", "wheel", "--no-deps",
           "--wheel-dir", base / "dist", context, cwd=base)  # fmt: skip
    (wheel,) = (base / "dist").glob("tinyfleet-*.whl")
    venv = base / "opt-tinyfleet"
    _timed(figures, "venv", sys.executable, "-m", "venv", venv, cwd=base)
    _timed(figures, "lock", venv / "bin" / "pip", "install", "--require-hashes", "-r", LOCK,
           cwd=base)  # fmt: skip
    _timed(figures, "install", venv / "bin" / "pip", "install", "--no-deps", wheel, cwd=base)
    FIGURES.append(
        f"image venv built in {sum(figures.values()):.1f} s: pip wheel {figures['wheel']:.1f} s, "
        f"python -m venv {figures['venv']:.1f} s, server.lock {figures['lock']:.1f} s, "
        f"the wheel {figures['install']:.1f} s"
    )
    workdir = base / "workdir"
    workdir.mkdir()
    return ImageVenv(venv, workdir)


def _locked_here() -> set[str]:
    """Names in server.lock whose environment marker holds on this machine."""
    names = set()
    for line in LOCK.read_text().splitlines():
        match = re.match(r"([a-z0-9][a-z0-9._-]*)==\S+\s*(?:;\s*(.*?))?\s*\\?$", line)
        if match and (match.group(2) is None or Marker(match.group(2)).evaluate()):
            names.add(match.group(1))
    return names


def test_tensorflow_is_not_importable(image_venv: ImageVenv) -> None:
    done = image_venv.run(image_venv.bin / "python", "-c", "import tensorflow")
    assert done.returncode == 1
    assert "No module named 'tensorflow'" in done.stderr


def test_the_venv_holds_the_server_lock_and_the_wheel_and_nothing_else(
    image_venv: ImageVenv,
) -> None:
    listing = image_venv.run(image_venv.bin / "pip", "list", "--format=freeze")
    assert listing.returncode == 0, listing.stderr
    installed = {
        re.sub(r"[-_.]+", "-", line.split("==")[0].lower()) for line in listing.stdout.split()
    }
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"tinyfleet=={version}" in listing.stdout.split()
    assert installed - {"pip", "setuptools"} == _locked_here() | {"tinyfleet"}


def test_fleet_is_imported_from_the_venv_not_this_checkout(image_venv: ImageVenv) -> None:
    done = image_venv.run(image_venv.bin / "python", "-c", "import fleet; print(fleet.__file__)")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(image_venv.root)


@dataclass(frozen=True)
class Served:
    venv: ImageVenv
    base_url: str
    mqtt_port: int
    token: str
    trust: Trust


@pytest.fixture(scope="module")
def served(image_venv: ImageVenv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``fleet serve`` from the venv as compose runs it: its broker has the dynamic
    security plugin, and the server makes the device logins. SQLite, free ports."""
    if find_mosquitto() is None or find_dynsec_plugin() is None:
        pytest.skip("mosquitto with its dynsec plugin is not installed (.ci/run installs it)")
    base = tmp_path_factory.mktemp("served")
    trust = create_trust(base / "offline")
    port, token = free_port(), "tf_" + "image-layout-test" * 2
    password = "image-" + os.urandom(12).hex()
    config = Dynsec(initial_config("fleet-server", password))
    with running_mosquitto(base / "broker", dynsec=config) as broker:
        log = (base / "server.log").open("w")
        server = subprocess.Popen(
            [image_venv.bin / "fleet", "serve", "--log-level", "WARNING"],
            cwd=image_venv.workdir, stdout=log, stderr=subprocess.STDOUT,
            env=image_venv.env(
                FLEET_DATA_DIR=str(base / "data"), FLEET_ROOT_PATH=str(trust.root),
                FLEET_DIRECTOR_KEY_PATH=str(trust.director_key),
                FLEET_BOOTSTRAP_ADMIN_TOKEN=token, FLEET_HTTP_PORT=str(port),
                FLEET_COAP_PORT="0", FLEET_BROKER_ACCOUNTS="dynsec",
                FLEET_MQTT_URL=f"mqtt://fleet-server:{password}@127.0.0.1:{broker.server_port}",
            ),
        )  # fmt: skip
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_until_up(server, base_url, base / "server.log")
            yield Served(image_venv, base_url, broker.port, token, trust)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()


def _wait_until_up(server: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"fleet serve exited {server.returncode}:\n{log.read_text()[-4000:]}")
        try:
            httpx.get(f"{base_url}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"fleet serve did not answer in 60 s:\n{log.read_text()[-4000:]}")


def test_fleet_serve_from_the_venv_answers_healthz(served: Served) -> None:
    health = httpx.get(f"{served.base_url}/healthz", timeout=5)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})


def test_its_database_was_migrated_from_the_wheel(served: Served) -> None:
    devices = httpx.get(
        f"{served.base_url}/api/v1/devices",
        headers={"Authorization": f"Bearer {served.token}"},
        timeout=5,
    )
    assert (devices.status_code, devices.json()["items"]) == (200, [])


def _healthcheck(venv: ImageVenv, port: int) -> int:
    python, *args = next(i for i in SERVER if i.keyword == "HEALTHCHECK").exec_form()
    assert python == "python"
    return venv.run(venv.bin / python, *args, timeout=30, FLEET_HTTP_PORT=str(port)).returncode


def test_the_image_healthcheck_passes_exactly_when_readyz_answers_2xx(served: Served) -> None:
    """/readyz comes with another change; until it lands the probe must fail (404)."""
    port = int(served.base_url.rsplit(":", 1)[1])
    ready = httpx.get(f"{served.base_url}/readyz", timeout=5).status_code
    assert (_healthcheck(served.venv, port) == 0) == (200 <= ready < 300)
    assert _healthcheck(served.venv, free_port()) != 0  # nothing listening


def _run_sim_service(served: Served, directory: Path) -> subprocess.CompletedProcess[str]:
    return served.venv.run(
        served.venv.bin / "python", ROOT / "deploy" / "fleet-sim" / "entrypoint.py",
        timeout=120, FLEET_URL=served.base_url, FLEET_TOKEN=served.token,
        SIM_MQTT_URL=f"mqtt://127.0.0.1:{served.mqtt_port}", SIM_ROOT=str(served.trust.root),
        SIM_DEVICES="3", SIM_DIR=str(directory), SIM_PREFIX="image-test", SIM_RUN_SECONDS="2",
    )  # fmt: skip


def test_the_fleet_sim_service_enrolls_its_devices_connects_and_restarts(
    served: Served, tmp_path: Path
) -> None:
    """Its devices log in with the broker logins the enrollment answered with, saved
    beside their keys; a restart reuses them, and one that finds none asks for new ones."""
    directory = tmp_path / "sim"
    first = _run_sim_service(served, directory)
    assert first.returncode == 0, first.stderr
    saved = json.loads((directory / "broker-logins.json").read_text())
    ids = [f"image-test-{i:05d}" for i in (1, 2, 3)]
    assert [login["username"] for login in saved] == ids
    since = _seen(served)
    again = _run_sim_service(served, directory)  # a restarted container
    assert again.returncode == 0, again.stderr
    assert json.loads((directory / "broker-logins.json").read_text()) == saved
    seen_again = _seen(served)
    (directory / "broker-logins.json").unlink()  # it stopped between enrolling and saving
    renewed = _run_sim_service(served, directory)
    assert renewed.returncode == 0, renewed.stderr
    fresh = json.loads((directory / "broker-logins.json").read_text())
    assert [login["username"] for login in fresh] == ids
    assert {x["password"] for x in fresh}.isdisjoint(x["password"] for x in saved)
    seen_last = _seen(served)
    assert list(seen_last) == ids
    for device_id in ids:  # every run's devices came online, so every login worked
        assert since[device_id] is not None
        assert seen_again[device_id] is not None and seen_again[device_id] > since[device_id]
        assert seen_last[device_id] is not None and seen_last[device_id] > seen_again[device_id]


def _seen(served: Served) -> dict[str, str | None]:
    devices = httpx.get(
        f"{served.base_url}/api/v1/devices",
        headers={"Authorization": f"Bearer {served.token}"},
        timeout=5,
    ).json()["items"]
    return {d["id"]: d["last_seen"] for d in devices}
