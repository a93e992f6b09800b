"""The admin API's rate limits: a flooding client gets 429 with ``Retry-After``, counted
in the metrics, while a second client's requests all succeed.

A real app over a migrated SQLite database, clients with their own addresses (ASGI's
``client``) and tokens, and the ``limits`` library's counters in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from fleet.api.app import create_api
from fleet.api.context import ApiContext
from fleet.domain.records import Role
from fleet.ratelimit import ApiRates, RateLimiter, parse_rate
from fleet.store import make_engine
from tests.api.support import API, build_context, seed_tokens
from tests.signer.simulator import START, KeyPool, RepositorySimulator

PER_TOKEN, PER_ADDRESS = 20, 100  # a minute each: nothing slides during a test


@pytest.fixture
def context(sqlite_template: Path, tmp_path: Path, keys: KeyPool) -> ApiContext:
    database = tmp_path / "fleet.db"
    database.write_bytes(sqlite_template.read_bytes())
    engine = make_engine(f"sqlite:///{database}")
    built = build_context(
        engine, tmp_path / "blobs", RepositorySimulator(keys, now=START), now=START, queued=[]
    )
    rates = ApiRates(
        per_token=parse_rate(f"{PER_TOKEN}/minute"),
        per_address=parse_rate(f"{PER_ADDRESS}/minute"),
    )
    return replace(built, api_rates=rates, rate_limiter=RateLimiter())


@pytest.fixture
async def clients(context: ApiContext) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    secrets = seed_tokens(context, START)
    app = create_api(context)
    made = {}
    for name, address, role in (
        ("flooder", "10.0.0.1", Role.ADMIN),
        ("other", "10.0.0.2", Role.VIEWER),
    ):
        transport = httpx.ASGITransport(app=app, client=(address, 40_000))
        made[name] = httpx.AsyncClient(
            transport=transport,
            base_url="http://fleet.test",
            headers={"Authorization": f"Bearer {secrets[role]}"},
        )
    yield made
    for client in made.values():
        await client.aclose()


def limited(context: ApiContext, scope: str) -> float:
    value = context.metrics.registry.get_sample_value("fleet_rate_limited_total", {"scope": scope})
    return value or 0.0


async def test_a_flooding_token_gets_429s_and_the_other_client_only_successes(
    context: ApiContext, clients: dict[str, httpx.AsyncClient]
) -> None:
    flooder, other = clients["flooder"], clients["other"]
    flood, calm = [], []
    for n in range(3 * PER_TOKEN):
        flood.append(await flooder.get(f"{API}/devices"))
        if n % 4 == 0:
            calm.append(await other.get(f"{API}/devices"))

    assert [r.status_code for r in flood[:PER_TOKEN]] == [200] * PER_TOKEN
    refused = flood[PER_TOKEN:]
    assert {r.status_code for r in refused} == {429}
    for response in refused:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert {r.status_code for r in calm} == {200} and len(calm) == 15
    assert limited(context, "token") == len(refused)


async def test_one_address_is_limited_whatever_tokens_it_cycles_through(
    context: ApiContext, clients: dict[str, httpx.AsyncClient]
) -> None:
    flooder, other = clients["flooder"], clients["other"]
    answers = [
        await flooder.get(f"{API}/devices", headers={"Authorization": f"Bearer tf_guess{n}"})
        for n in range(PER_ADDRESS + 10)
    ]
    assert [r.status_code for r in answers[:PER_ADDRESS]] == [401] * PER_ADDRESS
    assert {r.status_code for r in answers[PER_ADDRESS:]} == {429}
    assert answers[-1].json()["limit"] == "address"
    assert limited(context, "address") == 10
    assert (await other.get(f"{API}/devices")).status_code == 200


async def test_health_metrics_and_artifact_downloads_are_not_limited(
    context: ApiContext, clients: dict[str, httpx.AsyncClient]
) -> None:
    flooder = clients["flooder"]
    for _ in range(PER_ADDRESS + 5):
        assert (await flooder.get("/healthz")).status_code == 200
        assert (await flooder.get(f"{API}/artifacts/{'0' * 64}")).status_code == 404
    assert (await flooder.get(f"{API}/devices")).status_code == 200
