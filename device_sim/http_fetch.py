"""Resumable artifact downloads over HTTP (``GET {base}/artifacts/{sha256}``).

Defences, after TUF's: every byte goes through ``signer.artifacts.ArtifactVerifier``,
which refuses the first byte past the declared length (endless data) and the wrong digest
at the end; the whole download, retries included, runs under one overall deadline (slow
retrieval). Bytes already on disk are kept in ``{dest}.part`` and a later attempt asks
for the rest with ``Range: bytes=N-``. Connection errors and 5xx answers are retried with
exponential backoff; refusals are not.

httpx's exceptions are mapped to ours in one place, ``_map_transport_errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx

from device_sim.errors import ArtifactUnavailable, DownloadFailed
from device_sim.faults import LinkFault
from device_sim.fetching import FetchPolicy, ResumableFetcher, TransientFetchError
from device_sim.flash import CHUNK, ArtifactRef
from device_sim.wire import artifact_url
from signer.artifacts import ArtifactVerifier

__all__ = ["PERMANENT_TRANSPORT_ERRORS", "FetchPolicy", "HttpArtifactFetcher"]

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


PERMANENT_TRANSPORT_ERRORS = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)
"""Our own mistakes (a bad URL, a request httpx cannot send): another attempt won't help."""


@contextlib.contextmanager
def _map_transport_errors(artifact: ArtifactRef) -> Iterator[None]:
    """Every ``httpx.TransportError`` becomes a retry or a ``DownloadFailed``."""
    try:
        yield
    except PERMANENT_TRANSPORT_ERRORS as exc:
        raise DownloadFailed(f"{artifact.name}: {type(exc).__name__}: {exc}") from exc
    except httpx.TransportError as exc:
        raise TransientFetchError(f"{artifact.name}: {type(exc).__name__}: {exc}") from exc


class HttpArtifactFetcher(ResumableFetcher):
    """An ``ArtifactFetcher`` over a shared ``httpx.AsyncClient``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        *,
        policy: FetchPolicy | None = None,
        link_fault: LinkFault | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(policy=policy, sleep=sleep)
        self._client = client
        self._base_url = base_url
        self._link_fault = link_fault

    async def _attempt(self, artifact: ArtifactRef, part: Path) -> None:
        verifier, offset = _resume(artifact, part)
        if offset < artifact.length:
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
                self.resumed += 1
                log.info("%s: resuming at byte %d of %d", artifact.name, offset, artifact.length)
            with _map_transport_errors(artifact):
                url = artifact_url(self._base_url, artifact.sha256)
                async with self._client.stream("GET", url, headers=headers) as response:
                    verifier = _accept_response(response, artifact, part, verifier, offset)
                    await self._receive(response, artifact, part, verifier)
        verifier.finish()

    async def _receive(
        self,
        response: httpx.Response,
        artifact: ArtifactRef,
        part: Path,
        verifier: ArtifactVerifier,
    ) -> None:
        cut = self._link_fault.cut_after(verifier.remaining) if self._link_fault else None
        received = 0
        with part.open("ab") as out:
            async for chunk in response.aiter_bytes():
                if cut is not None and received + len(chunk) >= cut:
                    chunk = chunk[: cut - received]
                    verifier.update(chunk)
                    out.write(chunk)
                    raise TransientFetchError(
                        f"{artifact.name}: simulated link drop after {cut} bytes"
                    )
                verifier.update(chunk)
                out.write(chunk)
                received += len(chunk)


def _resume(artifact: ArtifactRef, part: Path) -> tuple[ArtifactVerifier, int]:
    """A verifier that has seen the bytes already in ``part``, and how many there are."""
    verifier = ArtifactVerifier(name=artifact.name, length=artifact.length, sha256=artifact.sha256)
    if not part.exists():
        return verifier, 0
    if part.stat().st_size > artifact.length:
        part.unlink()
        return verifier, 0
    with part.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            verifier.update(chunk)
    return verifier, verifier.received


def _accept_response(
    response: httpx.Response,
    artifact: ArtifactRef,
    part: Path,
    verifier: ArtifactVerifier,
    offset: int,
) -> ArtifactVerifier:
    """Check status and Content-Range; returns the verifier to continue with."""
    status = response.status_code
    if status == httpx.codes.PARTIAL_CONTENT and offset:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if match and int(match.group(1)) == offset:
            return verifier
        part.unlink(missing_ok=True)
        raise TransientFetchError(
            f"{artifact.name}: asked for byte {offset}, got range {match and match[0]}"
        )
    if status == httpx.codes.OK:
        if offset:
            log.info("%s: server ignored Range; starting again from byte 0", artifact.name)
        part.unlink(missing_ok=True)
        return ArtifactVerifier(name=artifact.name, length=artifact.length, sha256=artifact.sha256)
    if status == httpx.codes.REQUESTED_RANGE_NOT_SATISFIABLE:
        part.unlink(missing_ok=True)
        raise TransientFetchError(f"{artifact.name}: server cannot resume at byte {offset}")
    if status in (httpx.codes.NOT_FOUND, httpx.codes.GONE):
        raise ArtifactUnavailable(f"{artifact.name}: {artifact.sha256} is not on the server")
    if status >= 500 or status == httpx.codes.TOO_MANY_REQUESTS:
        raise TransientFetchError(f"{artifact.name}: HTTP {status}")
    raise DownloadFailed(f"{artifact.name}: unexpected HTTP {status}")
