"""Schemathesis holds every operation to its OpenAPI document, as a generated client would.

``--checks all --mode all`` over the examples, coverage, fuzzing and stateful phases:
no 5xx, every status and Content-Type documented, schema-valid requests accepted and
invalid ones refused, ``Allow`` on 405, responses matching their schemas. Once with an
admin token (requests reach validation and the services) and once with a viewer token
(every write is refused by role). ``tests/api/schemathesis.toml`` names the three
operations whose 422s depend on more than a schema can say (signatures, plan rules,
model bytes), and why.

The app is served by a real uvicorn on a free port (a thread, stopped after the module)
over a migrated SQLite database with a device class and a device. Schemathesis runs as
its own command line against that server, as a user would run it, not through its pytest
plugin: the plugin reaches into pytest's private attributes and broke with pytest 9.2.
The seed is fixed and the examples per operation bounded, so the run is repeatable.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from fleet.api.app import create_api
from fleet.domain.records import DeviceClass, Role
from fleet.services.catalog import Enrollment, create_device_class, enroll_devices
from fleet.store import UnitOfWork, make_engine
from tests.api.support import build_context, device_entry, seed_tokens
from tests.signer.simulator import DEVICE_CLASS, START, KeyPool, RepositorySimulator

pytest.importorskip("schemathesis")

EXAMPLES_PER_OPERATION = 6
CONFIG = Path(__file__).with_name("schemathesis.toml")


@dataclass(frozen=True)
class Served:
    app: FastAPI
    url: str
    tokens: dict[Role, str]

    def authorization(self, role: Role) -> str:
        """One header, ``NAME: VALUE``."""
        return f"Authorization: Bearer {self.tokens[role]}"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, keys: KeyPool
) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("fuzz")
    shutil.copyfile(sqlite_template, directory / "fleet.db")
    engine = make_engine(f"sqlite:///{directory / 'fleet.db'}")
    sim = RepositorySimulator(keys, now=START)
    context = build_context(engine, directory / "blobs", sim, now=START, queued=[])
    secrets = seed_tokens(context, START)
    _seed_fleet(context.new_uow)
    app = create_api(context)
    with _serving(app) as url:
        yield Served(app, url, secrets)
    engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("role", [Role.ADMIN, Role.VIEWER], ids=lambda r: r.value)
def test_every_generated_request_is_answered_as_documented(
    served: Served, role: Role, tmp_path: Path
) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(CONFIG),
            "run",
            f"{served.url}/api/v1/openapi.json",
            "--url",
            served.url,
            "--checks",
            "all",
            "--mode",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            "1",
            "--workers",
            "1",
            "--header",
            served.authorization(role),
            "--request-timeout",
            "10",
            "--suppress-health-check",
            "all",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]


def _seed_fleet(new_uow: Callable[[], UnitOfWork]) -> None:
    create_device_class(new_uow(), DeviceClass(DEVICE_CLASS, 1024, 4096), actor="t", now=START)
    entry = device_entry("dev-00001")
    enrollment = Enrollment(entry["id"], DEVICE_CLASS, entry["public_key"])
    enroll_devices(new_uow(), [enrollment], actor="t", now=START)


@contextmanager
def _serving(app: FastAPI) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)  # off the main thread: no signal handlers
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        host, port = sock.getsockname()
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
