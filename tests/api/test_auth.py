"""Who may do what: bearer tokens, roles, and the few endpoints that need no token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet.domain.records import Role
from tests.api.support import API, TOKEN_NAMES, Fleet, problem_of

ADMIN = TOKEN_NAMES[Role.ADMIN]
API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
DOCUMENTED_MUTATIONS = re.findall(
    r"^\| (?:POST|PUT|PATCH|DELETE) \| `([^`]+)`", API_DOC.read_text(), re.M
)


def _mutating(fleet: Fleet) -> Iterator[tuple[str, str]]:
    app = fleet.client._transport.app  # type: ignore[attr-defined]
    for path, item in app.openapi()["paths"].items():
        for method in item:
            if method in ("post", "put", "patch", "delete"):
                yield method.upper(), re.sub(r"{\w+}", "dev-00001", path)


async def _each_mutation(fleet: Fleet, headers: dict[str, str]) -> list[httpx.Response]:
    routes = list(_mutating(fleet))
    assert len(routes) == len(DOCUMENTED_MUTATIONS)  # every POST, PUT and DELETE is documented
    return [await fleet.client.request(m, url, headers=headers) for m, url in routes]


async def test_a_viewer_can_change_nothing(fleet: Fleet) -> None:
    for response in await _each_mutation(fleet, fleet.auth(Role.VIEWER)):
        assert (response.status_code, problem_of(response)["code"]) == (403, "forbidden")
    audit = await fleet.client.get(f"{API}/audit", headers=fleet.auth(Role.VIEWER))
    assert {e["actor"] for e in audit.json()["items"]} == {"test"}


@pytest.mark.parametrize(
    "authorization", [None, "Bearer tf_not-a-real-token", "Basic YWRtaW46YWRtaW4=", "Bearer"]
)
async def test_a_missing_or_unknown_token_is_401(fleet: Fleet, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    responses = await _each_mutation(fleet, headers)
    responses.append(await fleet.client.get(f"{API}/devices", headers=headers))
    for response in responses:
        assert (response.status_code, problem_of(response)["code"]) == (401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"


async def test_only_an_admin_manages_tokens(fleet: Fleet) -> None:
    operator = fleet.auth(Role.OPERATOR)
    for method, url in [("GET", "/tokens"), ("POST", "/tokens"), ("DELETE", "/tokens/x")]:
        response = await fleet.client.request(method, API + url, headers=operator, json={})
        assert response.status_code == 403, (method, url)


async def test_a_token_secret_is_shown_once_and_works_until_revoked(fleet: Fleet) -> None:
    admin = fleet.auth(Role.ADMIN)
    created = await fleet.client.post(
        f"{API}/tokens", json={"name": "ci-bot", "role": "operator"}, headers=admin
    )
    assert created.status_code == 201
    secret = created.json()["secret"]
    bot = {"Authorization": f"Bearer {secret}"}
    assert (await fleet.client.get(f"{API}/devices", headers=bot)).status_code == 200

    listed = await fleet.client.get(f"{API}/tokens", headers=admin)
    assert secret not in listed.text
    assert all("secret" not in token for token in listed.json()["items"])
    assert {(t["name"], t["role"]) for t in listed.json()["items"]} >= {("ci-bot", "operator")}

    taken = await fleet.client.post(
        f"{API}/tokens", json={"name": "ci-bot", "role": "viewer"}, headers=admin
    )
    assert (taken.status_code, problem_of(taken)["code"]) == (409, "token_name_taken")

    revoked = await fleet.client.delete(f"{API}/tokens/ci-bot", headers=admin)
    assert (revoked.status_code, revoked.content) == (204, b"")
    assert (await fleet.client.get(f"{API}/devices", headers=bot)).status_code == 401
    again = await fleet.client.delete(f"{API}/tokens/ci-bot", headers=admin)
    assert (again.status_code, problem_of(again)["code"]) == (404, "not_found")

    audit = (await fleet.client.get(f"{API}/audit", headers=admin)).json()["items"]
    assert [(e["action"], e["subject"], e["actor"]) for e in audit[-2:]] == [
        ("token.create", "token:ci-bot", ADMIN),
        ("token.revoke", "token:ci-bot", ADMIN),
    ]


async def test_the_last_admin_token_cannot_be_revoked(fleet: Fleet) -> None:
    admin = fleet.auth(Role.ADMIN)
    response = await fleet.client.delete(f"{API}/tokens/{ADMIN}", headers=admin)
    assert (response.status_code, problem_of(response)["code"]) == (409, "last_admin_token")
    assert (await fleet.client.get(f"{API}/tokens", headers=admin)).status_code == 200


async def test_health_metrics_and_schema_need_no_token(fleet: Fleet) -> None:
    await fleet.client.get(f"{API}/devices/dev-00001", headers=fleet.auth(Role.VIEWER))
    health = await fleet.client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    metrics = await fleet.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert re.search(
        r'fleet_http_request_seconds_count\{method="GET",route="/api/v1/devices/\{device_id\}",'
        r'status="404"\} 1\.0',
        metrics.text,
    ), metrics.text
    schema = (await fleet.client.get(f"{API}/openapi.json")).json()
    assert schema["info"]["title"] == "tinyfleet admin API"
    assert f"{API}/artifacts/{{sha256}}" in schema["paths"]


async def test_every_response_carries_a_request_id_for_the_logs(fleet: Fleet) -> None:
    offered = await fleet.client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert offered.headers["X-Request-ID"] == "trace-42"
    fresh = await fleet.client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert len(fresh.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"{not json", "bad_request"), (b'{"id": "a", "id": "b"}', "duplicate_key")],
)
async def test_the_caller_is_checked_before_the_body_is_judged(
    fleet: Fleet, body: bytes, code: str
) -> None:
    """An unauthenticated client learns nothing about what the API would accept."""
    json_type = {"Content-Type": "application/json"}
    routes = [
        (m, url) for m, url in _mutating(fleet) if m in ("POST", "PUT", "PATCH")
    ]  # fmt: skip
    assert len(routes) > 10
    for method, url in routes:
        anonymous = await fleet.client.request(method, url, content=body, headers=json_type)
        assert (anonymous.status_code, problem_of(anonymous)["code"]) == (
            401, "unauthenticated"
        ), (method, url)  # fmt: skip
        viewer = await fleet.client.request(
            method, url, content=body, headers=json_type | fleet.auth(Role.VIEWER)
        )
        assert (viewer.status_code, problem_of(viewer)["code"]) == (403, "forbidden"), (
            method, url, viewer.text
        )  # fmt: skip
    admin = await fleet.client.post(
        f"{API}/devices", content=body, headers=json_type | fleet.auth(Role.ADMIN)
    )
    assert (admin.status_code, problem_of(admin)["code"]) == (400, code)
