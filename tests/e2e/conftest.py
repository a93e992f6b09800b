"""End-to-end fixtures: offline trust made with fleet-sign, databases of both kinds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.local_setup import Trust, create_trust
from tests.support.postgres import throwaway_database


@pytest.fixture(scope="session")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    return create_trust(tmp_path_factory.mktemp("trust"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None (the server's embedded SQLite default) or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    with throwaway_database("tinyfleet_e2e") as url:
        yield url
