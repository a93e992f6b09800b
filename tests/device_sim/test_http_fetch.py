"""The resumable fetcher against a mock transport: one hostile server per test."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from device_sim.errors import ArtifactUnavailable, DownloadFailed, DownloadTimeout
from device_sim.flash import ArtifactRef
from device_sim.http_fetch import PERMANENT_TRANSPORT_ERRORS, FetchPolicy, HttpArtifactFetcher
from signer.errors import ArtifactDigestMismatch, ArtifactTooLong

BLOB = bytes(range(256)) * 64
ARTIFACT = ArtifactRef("firmware", hashlib.sha256(BLOB).hexdigest(), len(BLOB))
QUICK = FetchPolicy(deadline=5.0, attempts=3, backoff=0.0)

Handler = Callable[[httpx.Request], httpx.Response]


async def _no_sleep(_seconds: float) -> None:
    return None


def _fetcher(handler: Handler, policy: FetchPolicy = QUICK) -> HttpArtifactFetcher:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HttpArtifactFetcher(client, "http://artifacts.test", policy=policy, sleep=_no_sleep)


def _ok(request: httpx.Request) -> httpx.Response:
    assert request.url.path == f"/artifacts/{ARTIFACT.sha256}"
    header = request.headers.get("range")
    if header is None:
        return httpx.Response(200, content=BLOB)
    start = int(header.removeprefix("bytes=").removesuffix("-"))
    content_range = f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"
    return httpx.Response(206, content=BLOB[start:], headers={"content-range": content_range})


async def test_a_download_is_saved_under_its_digest(tmp_path: Path) -> None:
    dest = tmp_path / ARTIFACT.sha256
    await _fetcher(_ok).fetch(ARTIFACT, dest)
    assert dest.read_bytes() == BLOB
    assert not dest.with_name(dest.name + ".part").exists()


async def test_partial_bytes_on_disk_are_resumed_with_range(tmp_path: Path) -> None:
    dest = tmp_path / ARTIFACT.sha256
    dest.with_name(dest.name + ".part").write_bytes(BLOB[:1000])
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("range"))
        return _ok(request)

    fetcher = _fetcher(handler)
    await fetcher.fetch(ARTIFACT, dest)
    assert seen == ["bytes=1000-"]
    assert fetcher.resumed == 1
    assert dest.read_bytes() == BLOB


async def test_a_server_that_ignores_range_is_read_from_the_start(tmp_path: Path) -> None:
    dest = tmp_path / ARTIFACT.sha256
    dest.with_name(dest.name + ".part").write_bytes(BLOB[:1000])
    await _fetcher(lambda _request: httpx.Response(200, content=BLOB)).fetch(ARTIFACT, dest)
    assert dest.read_bytes() == BLOB


async def test_a_range_answer_for_other_bytes_is_not_spliced_in(tmp_path: Path) -> None:
    dest = tmp_path / ARTIFACT.sha256
    dest.with_name(dest.name + ".part").write_bytes(BLOB[:1000])
    answers = iter(
        [
            httpx.Response(
                206, content=BLOB[500:], headers={"content-range": "bytes 500-16383/16384"}
            ),
            httpx.Response(200, content=BLOB),
        ]
    )
    await _fetcher(lambda _request: next(answers)).fetch(ARTIFACT, dest)
    assert dest.read_bytes() == BLOB


async def test_endless_data_is_refused_at_the_declared_length(tmp_path: Path) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 1024
            yield b"\x00" * 1024

    dest = tmp_path / ARTIFACT.sha256
    with pytest.raises(ArtifactTooLong):
        await _fetcher(lambda _request: httpx.Response(200, content=endless())).fetch(
            ARTIFACT, dest
        )
    assert sent <= ARTIFACT.length + 1024, "reading stopped right after the declared length"
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


async def test_the_wrong_bytes_are_refused_and_not_kept(tmp_path: Path) -> None:
    wrong = bytes(reversed(BLOB))
    dest = tmp_path / ARTIFACT.sha256
    with pytest.raises(ArtifactDigestMismatch):
        await _fetcher(lambda _request: httpx.Response(200, content=wrong)).fetch(ARTIFACT, dest)
    assert not dest.with_name(dest.name + ".part").exists()


async def test_slow_retrieval_hits_the_overall_deadline(tmp_path: Path) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        while True:
            yield b"\x00"
            await asyncio.sleep(0.05)

    policy = FetchPolicy(deadline=0.3, attempts=3, backoff=0.0)
    fetcher = _fetcher(lambda _request: httpx.Response(200, content=trickle()), policy)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DownloadTimeout):
        await fetcher.fetch(ARTIFACT, tmp_path / ARTIFACT.sha256)
    assert loop.time() - started < 1.0


async def test_a_missing_artifact_is_not_retried(tmp_path: Path) -> None:
    calls = 0

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(404)

    with pytest.raises(ArtifactUnavailable):
        await _fetcher(handler).fetch(ARTIFACT, tmp_path / ARTIFACT.sha256)
    assert calls == 1


def _transport_errors(cls: type[httpx.TransportError]) -> list[type[httpx.TransportError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _transport_errors(sub)
    return found


@pytest.mark.parametrize("error", _transport_errors(httpx.TransportError), ids=lambda e: e.__name__)
async def test_every_httpx_transport_error_is_mapped(
    tmp_path: Path, error: type[httpx.TransportError]
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise error("injected", request=request)
        return _ok(request)

    fetch = _fetcher(handler).fetch(ARTIFACT, tmp_path / ARTIFACT.sha256)
    if issubclass(error, PERMANENT_TRANSPORT_ERRORS):
        with pytest.raises(DownloadFailed):
            await fetch
        assert calls == 1, "not retried"
    else:
        await fetch
        assert (tmp_path / ARTIFACT.sha256).read_bytes() == BLOB


async def test_retries_end_in_download_failed(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(DownloadFailed, match="after 3 attempts"):
        await _fetcher(handler).fetch(ARTIFACT, tmp_path / ARTIFACT.sha256)


async def test_server_errors_are_retried(tmp_path: Path) -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, content=BLOB)])
    await _fetcher(lambda _request: next(answers)).fetch(ARTIFACT, tmp_path / ARTIFACT.sha256)
    assert (tmp_path / ARTIFACT.sha256).read_bytes() == BLOB
