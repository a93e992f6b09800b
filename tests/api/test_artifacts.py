"""Artifact uploads (streamed, capped, deduplicated) and downloads with HTTP Range."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from fleet.domain.records import Role
from tests.api.support import API, MAX_ARTIFACT_BYTES, Fleet, problem_of

DATA = bytes(range(256)) * 4  # 1,024 bytes, every offset distinguishable
SHA = hashlib.sha256(DATA).hexdigest()
URL = f"{API}/artifacts/{SHA}"


async def test_an_upload_is_stored_once_and_listed(fleet: Fleet) -> None:
    first = await fleet.upload(DATA, "application/vnd.tflite")
    assert first.status_code == 201
    assert first.json() | {"created_at": None} == {
        "sha256": SHA,
        "length": len(DATA),
        "media_type": "application/vnd.tflite",
        "created_at": None,
    }
    again = await fleet.upload(DATA, "application/octet-stream")
    assert (again.status_code, again.json()["media_type"]) == (200, "application/vnd.tflite")
    listed = await fleet.client.get(f"{API}/artifacts", headers=fleet.auth(Role.VIEWER))
    assert [a["sha256"] for a in listed.json()["items"]] == [SHA]


@pytest.mark.parametrize(
    ("content_type", "code"),
    [
        (None, "media_type_required"),
        ("application/x-www-form-urlencoded", "unsupported_media_type"),
        ("multipart/form-data; boundary=x", "unsupported_media_type"),
        ("not a media type", "unsupported_media_type"),
    ],
)
async def test_an_upload_needs_a_real_media_type(
    fleet: Fleet, content_type: str | None, code: str
) -> None:
    headers = fleet.auth(Role.OPERATOR)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await fleet.client.post(f"{API}/artifacts", content=DATA, headers=headers)
    assert (response.status_code, problem_of(response)["code"]) == (415, code)


async def test_a_declared_oversize_upload_is_refused_unread(fleet: Fleet) -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(10):
            pulled += 1
            yield b"x" * MAX_ARTIFACT_BYTES

    headers = {
        **fleet.auth(Role.OPERATOR),
        "Content-Type": "application/octet-stream",
        "Content-Length": str(10 * MAX_ARTIFACT_BYTES),
    }
    response = await fleet.client.post(f"{API}/artifacts", content=body(), headers=headers)
    assert (response.status_code, problem_of(response)["code"]) == (413, "artifact_too_large")
    assert pulled == 0


async def test_a_streamed_upload_stops_at_the_cap_and_stores_nothing(fleet: Fleet) -> None:
    chunk = 16 * 1024
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):
            sent += 1
            yield b"x" * chunk

    headers = {**fleet.auth(Role.OPERATOR), "Content-Type": "application/octet-stream"}
    response = await fleet.client.post(f"{API}/artifacts", content=endless(), headers=headers)
    assert (response.status_code, problem_of(response)["code"]) == (413, "artifact_too_large")
    assert sent <= MAX_ARTIFACT_BYTES // chunk + 2
    listed = await fleet.client.get(f"{API}/artifacts", headers=fleet.auth(Role.VIEWER))
    assert listed.json()["items"] == []
    assert list((fleet.blob_dir / "incoming").iterdir()) == []


async def test_an_empty_upload_is_refused(fleet: Fleet) -> None:
    response = await fleet.upload(b"")
    assert (response.status_code, problem_of(response)["code"]) == (422, "empty_body")


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-9", 0, 10),
        ("bytes=100-", 100, len(DATA)),
        ("bytes=-24", len(DATA) - 24, len(DATA)),
        ("bytes=1000-5000", 1000, len(DATA)),
        ("bytes=-5000", 0, len(DATA)),
        ("bytes=1023-1023", 1023, 1024),
    ],
)
async def test_a_range_is_served_as_partial_content(
    fleet: Fleet, header: str, start: int, stop: int
) -> None:
    await fleet.upload(DATA)
    response = await fleet.client.get(URL, headers={"Range": header})
    assert response.status_code == 206
    assert response.content == DATA[start:stop]
    assert response.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(DATA)}"
    assert response.headers["content-length"] == str(stop - start)
    assert response.headers["etag"] == f'"{SHA}"'


@pytest.mark.parametrize("header", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
async def test_an_unsatisfiable_range_is_416(fleet: Fleet, header: str) -> None:
    await fleet.upload(DATA)
    response = await fleet.client.get(URL, headers={"Range": header})
    assert (response.status_code, problem_of(response)["code"]) == (416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize(
    "header", [None, "items=0-1", "bytes=9-2", "bytes=x-", "bytes=" + "9" * 30]
)
async def test_no_usable_range_means_the_whole_artifact(fleet: Fleet, header: str | None) -> None:
    await fleet.upload(DATA, "application/vnd.tflite")
    headers = {} if header is None else {"Range": header}
    response = await fleet.client.get(URL, headers=headers)
    assert (response.status_code, response.content) == (200, DATA)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "application/vnd.tflite"
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["etag"] == f'"{SHA}"'


async def test_several_ranges_are_served_as_multipart_byteranges(fleet: Fleet) -> None:
    await fleet.upload(DATA, "application/vnd.tflite")
    response = await fleet.client.get(URL, headers={"Range": "bytes=0-1,5-6"})
    assert response.status_code == 206
    media_type, _, boundary = response.headers["content-type"].partition("; boundary=")
    assert media_type == "multipart/byteranges"
    parts = response.content.split(f"--{boundary}".encode())
    assert parts[0] == b"" and parts[-1] == b"--"
    bodies = [part.split(b"\r\n\r\n", 1) for part in parts[1:-1]]
    assert [body.removesuffix(b"\r\n") for _, body in bodies] == [DATA[0:2], DATA[5:7]]
    assert b"Content-Range: bytes 0-1/1024" in bodies[0][0]
    assert b"Content-Range: bytes 5-6/1024" in bodies[1][0]
    assert response.headers["content-length"] == str(len(response.content))


async def test_an_if_range_naming_another_version_gets_the_whole_artifact(fleet: Fleet) -> None:
    await fleet.upload(DATA)
    matching = await fleet.client.get(URL, headers={"Range": "bytes=0-9", "If-Range": f'"{SHA}"'})
    assert (matching.status_code, matching.content) == (206, DATA[:10])
    stale = await fleet.client.get(URL, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert (stale.status_code, stale.content) == (200, DATA)


async def test_downloads_need_no_token_and_honour_etags(fleet: Fleet) -> None:
    await fleet.upload(DATA)
    head = await fleet.client.head(URL)
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "1024", b"")
    cached = await fleet.client.get(URL, headers={"If-None-Match": f'"{SHA}"'})
    assert (cached.status_code, cached.content) == (304, b"")
    changed = await fleet.client.get(URL, headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200


async def test_an_unknown_artifact_is_404(fleet: Fleet) -> None:
    response = await fleet.client.get(f"{API}/artifacts/{'0' * 64}")
    assert (response.status_code, problem_of(response)["code"]) == (404, "not_found")
