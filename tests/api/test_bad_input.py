"""Bad input is never a 500: every route, every malformed request, a 4xx problem document.

The walk reads the app's own OpenAPI document (FastAPI's public view of every route,
included routers and all), so a new endpoint is covered without editing this file.
Requests carry an admin token, so they get past authorisation to the validation under
test. The client re-raises any exception the app lets escape, so a crash fails here
even before its status is checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fleet.api.app import JSON_BODY_LIMIT
from fleet.domain.records import Role
from tests.api.support import API, Fleet, problem_of

VALID_PATH = {"device_id": "dev-00001", "name": "nrf52840-kws", "sha256": "a" * 64}
VALID_PATH["digest"] = VALID_PATH["sha256"]
VALID_PATH.update(rollout_id="rollout-1", action="approve")
BAD_PATH_VALUES = ["bad id", "-dash-first", "x" * 65, "%00", "..%2F..", "caf%C3%A9", "a" * 63 + "G"]
HUGE = 10**30
BAD_JSON_BODIES: list[bytes] = [
    b"",
    b"not json",
    b"\xff\xfe\x00",
    b"[]",
    b"{}",
    b"null",
    b"1e999",
    b'{"unknown": 1}',
    b'{"name": 1, "ram_bytes": "many"}',
    b'{"name": "nrf\\u0000", "ram_bytes": -1, "flash_bytes": 1e400}',
    json.dumps({"name": "n", "ram_bytes": HUGE, "flash_bytes": HUGE}).encode(),
    json.dumps({"device_ids": [None] * 3, "tags": "not-a-list"}).encode(),
    json.dumps({"id": "a b", "device_class": "c", "public_key": "zz", "tags": ["t"] * 40}).encode(),
    json.dumps([{"id": "x" * 100}] * 2).encode(),
    json.dumps({"name": "tok", "role": "superuser"}).encode(),
    b'{"a": ' * 3000 + b"1" + b"}" * 3000,
]
# Per query parameter type, values its schema refuses.
QueryValue = str | list[str]
BAD_QUERY_VALUES: dict[str, list[QueryValue]] = {
    "integer": ["-1", "many", "1.5", str(HUGE)],
    "array": [["ok", "bad tag"], [f"t{i}" for i in range(40)], ["nul\x00"]],
    "string": ["", "nul\x00byte", "x" * 300, "caf\u00e9"],
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    query: dict[str, str]
    body: str | None  # "json", "raw" (any bytes are valid) or None


@dataclass(frozen=True)
class Probe:
    method: str
    url: str
    content: bytes | None = None
    params: dict[str, QueryValue] | None = None
    content_type: str = "application/json"


def operations(fleet: Fleet) -> Iterator[Operation]:
    app = fleet.client._transport.app  # type: ignore[attr-defined]
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            parameters = operation.get("parameters", [])
            query = {p["name"]: _kind(p["schema"]) for p in parameters if p["in"] == "query"}
            yield Operation(method.upper(), path, query, _body_kind(operation))


def _kind(schema: dict[str, object]) -> str:
    text = json.dumps(schema)
    return next((kind for kind in ("array", "integer") if f'"{kind}"' in text), "string")


def _body_kind(operation: dict[str, Any]) -> str | None:
    if "requestBody" not in operation:
        return None
    raw = '"binary"' in json.dumps(operation["requestBody"])
    return "raw" if raw else "json"


def _fill(path: str, **override: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: override.get(m[1], VALID_PATH[m[1]]), path)


def probes(operation: Operation) -> Iterator[Probe]:
    method = operation.method
    for param in re.findall(r"{(\w+)}", operation.path):
        for bad in BAD_PATH_VALUES:
            yield Probe(method, _fill(operation.path, **{param: bad}))
    url = _fill(operation.path)
    if operation.body is not None:
        # For a raw upload any non-empty bytes are valid; empty and oversized are not.
        bodies = BAD_JSON_BODIES if operation.body == "json" else [b""]
        for body in [*bodies, b"x" * (JSON_BODY_LIMIT + 1)]:
            yield Probe(method, url, content=body)
    for name, kind in operation.query.items():
        for value in BAD_QUERY_VALUES[kind]:
            yield Probe(method, url, params={name: value})


async def _send(fleet: Fleet, probe: Probe) -> httpx.Response:
    headers = {**fleet.auth(Role.ADMIN), "Content-Type": probe.content_type}
    return await fleet.client.request(
        probe.method, probe.url, content=probe.content, params=probe.params, headers=headers
    )


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
async def test_every_route_answers_bad_input_with_a_4xx_problem(fleet: Fleet) -> None:
    await fleet.create_class()
    await fleet.enroll("dev-00001")
    wrong: list[str] = []
    sent = 0
    for operation in operations(fleet):
        for probe in probes(operation):
            sent += 1
            response = await _send(fleet, probe)
            if not _is_problem(response, probe.method):
                wrong.append(f"{probe} -> {response.status_code} {response.text[:200]}")
    assert wrong == []
    assert sent > 200


def _is_problem(response: httpx.Response, method: str) -> bool:
    if not 400 <= response.status_code < 500:
        return False
    if response.headers.get("content-type") != "application/problem+json":
        return False
    return method == "HEAD" or response.json()["status"] == response.status_code


async def test_oversized_bodies_are_refused_before_they_are_read(fleet: Fleet) -> None:
    chunks_sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for _ in range(1024):
            chunks_sent += 1
            yield b"[" * 65_536

    response = await fleet.client.post(
        f"{API}/devices/bulk", content=endless(), headers=fleet.auth(Role.OPERATOR)
    )
    assert (response.status_code, problem_of(response)["code"]) == (413, "too_large")
    assert chunks_sent <= JSON_BODY_LIMIT // 65_536 + 2


async def test_every_json_body_is_read_strictly(fleet: Fleet) -> None:
    """One reader for every body: a repeated key is never "the last one wins"."""
    headers = {**fleet.auth(Role.ADMIN), "Content-Type": "application/json"}
    repeated = b'{"name": "ci-bot", "role": "viewer", "role": "admin"}'
    response = await fleet.client.post(f"{API}/tokens", content=repeated, headers=headers)
    problem = problem_of(response)
    assert (response.status_code, problem["code"]) == (400, "duplicate_key")
    assert "role" in problem["detail"]
    listed = await fleet.client.get(f"{API}/tokens", headers=headers)
    assert "ci-bot" not in listed.text
    for body in (b'{"name": "x", "ram_bytes": NaN, "flash_bytes": 1}',
                 b'{"name": "x", "ram_bytes": 9007199254740993, "flash_bytes": 1}'):  # fmt: skip
        refused = await fleet.client.post(f"{API}/device-classes", content=body, headers=headers)
        assert (refused.status_code, problem_of(refused)["code"]) == (400, "bad_request")
