"""A migrated database per test (SQLite by default, PostgreSQL where a test asks) and a
real admin API over it, with one token per role.

SQLite databases are copies of one migrated template, so a test pays for a file copy,
not for the migrations. PostgreSQL gets one throwaway database for the session (server
at ``TINYFLEET_TEST_POSTGRES``, as in tests/store), emptied before each test that uses
it; tests skip when the server is unreachable.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from fleet.store import make_engine, upgrade
from fleet.store.tables import metadata
from tests.api.support import Fleet, build_context, client_for, seed_tokens
from tests.signer.simulator import START, KeyPool, RepositorySimulator
from tests.support.postgres import throwaway_database


@pytest.fixture(scope="session")
def keys() -> KeyPool:
    return KeyPool()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = tmp_path_factory.mktemp("api-template") / "fleet.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with throwaway_database("tinyfleet_api") as url:
        upgrade(url)
        yield url


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """SQLite unless the test is parametrized with ``engine`` = "postgresql" (indirect)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "postgresql":
        made = make_engine(request.getfixturevalue("postgres_url"))
        _empty_tables(made)
    else:
        database = tmp_path / "fleet.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), database)
        made = make_engine(f"sqlite:///{database}")
    yield made
    made.dispose()


@pytest.fixture
async def fleet(engine: Engine, tmp_path: Path, keys: KeyPool) -> AsyncIterator[Fleet]:
    sim = RepositorySimulator(keys, now=START)
    queued: list[int] = []
    blob_dir = tmp_path / "blobs"
    context = build_context(engine, blob_dir, sim, now=START, queued=queued)
    secrets = seed_tokens(context, START)
    async with client_for(context) as client:
        yield Fleet(client, context, sim, secrets, blob_dir, queued)


def _empty_tables(engine: Engine) -> None:
    names = ", ".join(f'"{table.name}"' for table in reversed(metadata.sorted_tables))
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
