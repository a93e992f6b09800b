"""End-to-end fixtures: offline trust made with fleet-sign, databases of both kinds."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.local_setup import LocalServer, Trust, create_trust, running_server
from fleet.transports.dynsec import initial_config
from fleet.transports.embedded_broker import Broker, Dynsec, running_mosquitto
from tests.support.postgres import throwaway_database

SERVER_PASSWORD = secrets.token_urlsafe(24)


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


@pytest.fixture
def dynsec_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Mosquitto with the dynamic security plugin, from the shipped template."""
    with running_mosquitto(
        tmp_path_factory.mktemp("dynsec"),
        dynsec=Dynsec(initial_config("fleet-server", SERVER_PASSWORD)),
    ) as broker:
        yield broker


@pytest.fixture
def server(trust: Trust, dynsec_broker: Broker, tmp_path: Path) -> Iterator[LocalServer]:
    """A server that manages the dynsec broker's device logins."""
    url = f"mqtt://fleet-server:{SERVER_PASSWORD}@127.0.0.1:{dynsec_broker.server_port}"
    with running_server(
        trust,
        tmp_path / "server",
        mqtt_url=url,
        broker_accounts="dynsec",
        public_mqtt_url=dynsec_broker.url,
    ) as local:
        yield local
