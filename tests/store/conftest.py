"""Migrated databases for the store tests: SQLite in a temp dir, and PostgreSQL.

PostgreSQL tests get a throwaway database, created once per session under a unique
name and dropped at the end, so they never touch anyone else's data. The server is
found at ``TINYFLEET_TEST_POSTGRES`` (default: trust auth on 127.0.0.1:5432, user
``postgres``, maintenance database ``test``); when it is unreachable those tests skip.
Each test starts from empty tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from fleet.store.db import make_engine, make_session_factory
from fleet.store.migrate import upgrade
from fleet.store.tables import metadata
from fleet.store.uow import SqlUnitOfWork
from tests.store.builders import seed_device
from tests.support.postgres import throwaway_database

# Backend name → the session fixture that gives its migrated database's URL.
BACKEND_URLS = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("store") / "fleet.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with throwaway_database("tinyfleet_store") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def engines() -> Iterator[dict[str, Engine]]:
    made: dict[str, Engine] = {}
    yield made
    for engine in made.values():
        engine.dispose()


@pytest.fixture(params=list(BACKEND_URLS))
def engine(request: pytest.FixtureRequest, engines: dict[str, Engine]) -> Engine:
    """An engine on empty, migrated tables; tests using it run once per backend."""
    return _empty_engine(request.param, request, engines)


@pytest.fixture
def postgres_engine(request: pytest.FixtureRequest, engines: dict[str, Engine]) -> Engine:
    return _empty_engine("postgresql", request, engines)


def _empty_engine(
    backend: str, request: pytest.FixtureRequest, engines: dict[str, Engine]
) -> Engine:
    if backend not in engines:
        engines[backend] = make_engine(request.getfixturevalue(BACKEND_URLS[backend]))
    _empty_tables(engines[backend])
    return engines[backend]


@pytest.fixture
def session_factory(engine: Engine) -> Callable[[], Session]:
    return make_session_factory(engine)


@pytest.fixture
def uow(session_factory: Callable[[], Session]) -> SqlUnitOfWork:
    return SqlUnitOfWork(session_factory)


@pytest.fixture
def device_id(uow: SqlUnitOfWork) -> str:
    """An enrolled device of a registered class, with one release it may be directed to."""
    return seed_device(uow)


def _empty_tables(engine: Engine) -> None:
    tables = list(reversed(metadata.sorted_tables))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{table.name}"' for table in tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(table.delete())
