"""A request whose transaction the database aborts gets 503 ``store_unavailable`` with
``Retry-After``, changes nothing, and succeeds when sent again (real PostgreSQL: a row
lock held by another connection and the server's own ``lock_timeout``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, make_url, text
from sqlmodel import Session

from fleet.domain.records import Role
from fleet.store.db import make_engine
from tests.api.conftest import _empty_tables
from tests.api.support import API, Fleet, problem_of


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    """The API's engine gives up on a row lock after 200 ms, as a deadlock victim does."""
    url = make_url(postgres_url).update_query_dict({"options": "-c lock_timeout=200"})
    made = make_engine(url)
    _empty_tables(made)
    yield made
    made.dispose()


@pytest.fixture
def blocker(postgres_url: str) -> Iterator[Session]:
    """Another client of the same database."""
    other = make_engine(postgres_url)
    with Session(other) as session:
        yield session
    other.dispose()


async def test_a_request_the_database_aborts_is_503_and_may_be_sent_again(
    fleet: Fleet, blocker: Session
) -> None:
    await fleet.create_class()
    assert (await fleet.enroll("dev-00001")).status_code == 201
    url, body = f"{API}/devices/dev-00001/tags", {"tags": ["site:lab"]}
    blocker.execute(text("SELECT id FROM device WHERE id = 'dev-00001' FOR UPDATE"))
    refused = await fleet.client.put(url, json=body, headers=fleet.auth(Role.OPERATOR))
    blocker.rollback()
    assert refused.status_code == 503, refused.text
    assert problem_of(refused)["code"] == "store_unavailable"
    assert refused.headers["Retry-After"] == "1"
    assert "SELECT" not in refused.text and "UPDATE" not in refused.text
    shown = await fleet.client.get(f"{API}/devices/dev-00001", headers=fleet.auth(Role.VIEWER))
    assert shown.json()["tags"] == []

    again = await fleet.client.put(url, json=body, headers=fleet.auth(Role.OPERATOR))
    assert (again.status_code, again.json()["tags"]) == (200, ["site:lab"])
