"""The migrations build exactly the schema tables.py declares, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from fleet.store.db import make_engine
from fleet.store.migrate import alembic_config, upgrade
from fleet.store.tables import metadata


def _schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_migrated_schema_matches_the_tables(engine: Engine) -> None:
    assert _schema_differences(engine) == []


def test_the_comparison_would_see_a_missing_schema(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert len(_schema_differences(engine)) >= len(metadata.tables)
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert len(_schema_differences(engine)) >= len(metadata.tables)
        upgrade(url)
        assert _schema_differences(engine) == []
    finally:
        engine.dispose()


def test_upgrading_twice_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade(url)
    upgrade(url)


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            pragma = {
                name: connection.execute(text(f"PRAGMA {name}")).scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30_000}


@pytest.mark.parametrize(
    "url", ["postgresql://fleet@db/fleet", "postgresql+psycopg://fleet@db/fleet"]
)
def test_postgresql_urls_use_psycopg(url: str) -> None:
    engine = make_engine(url)  # connects lazily, so no server is needed
    try:
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()
