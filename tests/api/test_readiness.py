"""``GET /readyz`` over real databases: ready only when the database answers at the
migrations' head, the broker is connected and the server is not draining; otherwise 503
``not_ready`` naming each failing check. ``GET /healthz`` answers either way."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from fleet.readiness import ReadinessProbe
from fleet.store.db import make_engine
from fleet.store.migrate import alembic_config, upgrade
from fleet.transports.embedded_broker import free_port
from tests.api.support import Fleet, client_for, problem_of


@pytest.fixture
def broker_up() -> threading.Event:
    up = threading.Event()
    up.set()
    return up


async def _readyz(fleet: Fleet, probe: ReadinessProbe) -> tuple[int, dict[str, object]]:
    async with client_for(replace(fleet.context, readiness=probe)) as client:
        assert (await client.get("/healthz")).status_code == 200
        response = await client.get("/readyz")
    if response.status_code == 503:
        return 503, problem_of(response)
    return response.status_code, response.json()


async def test_ready_when_every_check_passes_and_not_once_one_fails(
    fleet: Fleet, engine: Engine, broker_up: threading.Event
) -> None:
    draining = threading.Event()
    probe = ReadinessProbe(engine, broker_connected=broker_up.is_set, draining=draining.is_set)
    status, body = await _readyz(fleet, probe)
    assert (status, body["status"]) == (200, "ready")
    assert body["checks"] == {
        "draining": "ok",
        "database": "ok",
        "migrations": "ok",
        "broker": "ok",
    }

    broker_up.clear()
    status, body = await _readyz(fleet, probe)
    assert (status, body["code"]) == (503, "not_ready")
    assert body["checks"] == {
        "draining": "ok", "database": "ok", "migrations": "ok", "broker": "not connected"
    }  # fmt: skip
    assert body["detail"] == "broker: not connected"

    broker_up.set()
    draining.set()
    status, body = await _readyz(fleet, probe)
    assert (status, body["checks"]["draining"]) == (503, "draining after SIGTERM")


@pytest.fixture
def behind(tmp_path: Path) -> Iterator[Engine]:
    """A database one migration behind the code (an upgrade that has not run yet)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    upgrade(url, f"{head}-1")
    old = make_engine(url)
    yield old
    old.dispose()


async def test_a_database_behind_the_code_is_not_ready(
    fleet: Fleet, behind: Engine, broker_up: threading.Event
) -> None:
    probe = ReadinessProbe(behind, broker_connected=broker_up.is_set, draining=lambda: False)
    status, body = await _readyz(fleet, probe)
    assert status == 503
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["database"] == "ok"
    assert checks["migrations"].startswith("database at ['"), checks


async def test_an_unreachable_database_is_not_ready(
    fleet: Fleet, broker_up: threading.Event
) -> None:
    nobody = make_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test?connect_timeout=2"
    )
    try:
        probe = ReadinessProbe(nobody, broker_connected=broker_up.is_set, draining=lambda: False)
        status, body = await _readyz(fleet, probe)
    finally:
        nobody.dispose()
    assert status == 503
    assert body["checks"] == {
        "draining": "ok", "database": "unreachable", "migrations": "unknown", "broker": "ok"
    }  # fmt: skip
