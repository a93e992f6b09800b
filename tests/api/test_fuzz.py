"""Schemathesis fuzzes every operation of the OpenAPI document: no input is a 5xx.

The app is served by a real uvicorn on a free port (a thread, stopped after the module)
over a migrated SQLite database with a device class and a device, and every request
carries an admin token so it reaches validation and the services. Hypothesis runs
derandomized with a bounded number of examples per operation, so the run is repeatable
and takes a few seconds.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from fleet.api.app import create_api
from fleet.domain.records import DeviceClass, Role
from fleet.services.catalog import Enrollment, create_device_class, enroll_devices
from fleet.store import UnitOfWork, make_engine
from tests.api.support import build_context, device_entry, seed_tokens
from tests.signer.simulator import DEVICE_CLASS, START, KeyPool, RepositorySimulator

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402

EXAMPLES_PER_OPERATION = 12


@dataclass(frozen=True)
class Served:
    app: FastAPI
    url: str
    headers: dict[str, str]


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
        yield Served(app, url, {"Authorization": f"Bearer {secrets[Role.ADMIN]}"})
    engine.dispose()


@pytest.fixture(scope="module")
def fuzz_schema(served: Served) -> Any:
    return schemathesis.openapi.from_dict(served.app.openapi())


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_generated_request_is_a_server_error(case: Any, served: Served) -> None:
    response = case.call(base_url=served.url, headers=served.headers, timeout=10)
    case.validate_response(response, checks=[not_a_server_error])


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
