"""``fleet migrate``: the migration-only command the deployments run before the replicas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from fleet.cli import app
from fleet.store.db import make_engine
from fleet.store.migrate import alembic_config
from tests.support.postgres import throwaway_database


@pytest.fixture(autouse=True)
def _no_inherited_fleet_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the settings a test passes: none leaks in from the developer's shell."""
    for name in [n for n in os.environ if n.startswith("FLEET_")]:
        monkeypatch.delenv(name)


def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def _head(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def _migrate(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["migrate"], env=env)
    assert result.exit_code == 0, result.output


def test_migrates_the_database_named_by_the_environment_to_head_and_again_is_a_no_op(
    tmp_path: Path,
) -> None:
    with throwaway_database("tinyfleet_migrate") as url:
        assert _revision(url) is None
        env = {"FLEET_DATABASE_URL": url, "FLEET_DATA_DIR": str(tmp_path / "data")}
        _migrate(env)
        assert _revision(url) == _head(url)
        _migrate(env)
        assert _revision(url) == _head(url)


def test_without_a_database_url_migrates_the_sqlite_default_in_the_data_dir(
    tmp_path: Path,
) -> None:
    data = tmp_path / "fresh" / "data"
    _migrate({"FLEET_DATA_DIR": str(data)})
    url = f"sqlite:///{(data / 'fleet.db').resolve()}"
    assert _revision(url) == _head(url) is not None


def test_unusable_settings_exit_2_and_name_the_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["migrate"], env={"FLEET_DATA_DIR": str(tmp_path), "FLEET_HTTP_PORT": "99999"}
    )
    assert result.exit_code == 2
    assert "http_port" in result.output
