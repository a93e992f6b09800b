"""The device's CoAP side (docs/protocol.md §2): observe ``/m/{id}``, Block2 from ``/a/{sha}``,
status to ``/s/{id}``; one aiocoap client context (one UDP socket) per device.

- **Desired state.** ``GET /m/{id}`` with Observe; every notification's Delivery (aiocoap
  fetches the remaining Block2 blocks of a long one) goes to ``on_desired``. The
  observation is registered again after the response's Max-Age, or at once when it ends
  or fails, so a lost notification or a restarted server is healed.
- **Artifacts.** One confirmable ``GET /a/{sha256}`` per block (Block2, 1,024 bytes by
  default), appended to ``{dest}.part``; a later attempt continues at the first missing
  block. As over HTTP, every byte goes through ``ArtifactVerifier`` and the whole download
  runs under one deadline.
- **Status.** ``POST /s/{id}`` (confirmable, ``application/json``), in counter order
  from one queue; a report is sent again until the server acknowledges it.

aiocoap's errors are mapped in one place, ``_map_coap_errors``. Retransmission timing is
``CoapTuning`` (RFC 7252's 2 s ACK timeout is long for a simulated LAN).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiocoap import error, oscore
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.contentformat import ContentFormat

from device_sim.errors import ArtifactUnavailable, DownloadFailed
from device_sim.fetching import FetchPolicy, ResumableFetcher, TransientFetchError
from device_sim.flash import CHUNK, ArtifactRef
from schemas import Envelope, StatusReport
from signer.artifacts import ArtifactVerifier

__all__ = ["CoapArtifactFetcher", "CoapDeviceLink", "CoapTuning"]

log = logging.getLogger(__name__)
BLOCK_SZX = 6


class CoapTuning(TransportTuning):  # type: ignore[misc]
    """RFC 7252 retransmission with a shorter first timeout (simulated LAN)."""

    def __init__(self, ack_timeout: float = 0.5) -> None:
        self.ACK_TIMEOUT = ack_timeout


@contextlib.contextmanager
def _map_coap_errors(what: str) -> Iterator[None]:
    """aiocoap's network errors become a retry; its other errors a ``DownloadFailed``."""
    try:
        yield
    except (error.NetworkError, error.ResourceChanged, error.ObservationCancelled) as exc:
        raise TransientFetchError(f"{what}: {type(exc).__name__}: {exc}") from exc
    except error.Error as exc:
        raise DownloadFailed(f"{what}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class _Block:
    payload: bytes
    more: bool
    etag: bytes | None


class CoapArtifactFetcher(ResumableFetcher):
    """An ``ArtifactFetcher`` over CoAP Block2, resuming at the first missing block."""

    def __init__(
        self,
        context: Any,
        base_uri: str,
        *,
        policy: FetchPolicy | None = None,
        tuning: TransportTuning | None = None,
        szx: int = BLOCK_SZX,
    ) -> None:
        super().__init__(policy=policy)
        self._context = context
        self._base = base_uri.rstrip("/")
        self._tuning = tuning or CoapTuning()
        self._szx = szx

    async def _attempt(self, artifact: ArtifactRef, part: Path) -> None:
        size = 1 << (self._szx + 4)
        verifier, number = _resume(artifact, part, size)
        if number:
            self.resumed += 1
            log.info("%s: resuming at block %d", artifact.name, number)
        more = verifier.received < artifact.length
        with part.open("ab") as out:
            while more:
                block = await self._block(artifact, number)
                verifier.update(block.payload)
                out.write(block.payload)
                number, more = number + 1, block.more
        verifier.finish()

    async def _block(self, artifact: ArtifactRef, number: int) -> _Block:
        request = Message(
            code=Code.GET,
            uri=f"{self._base}/a/{artifact.sha256}",
            block2=(number, False, self._szx),
            transport_tuning=self._tuning,
        )
        with _map_coap_errors(artifact.name):
            response = await self._context.request(request, handle_blockwise=False).response
        code = response.code
        if code == Code.NOT_FOUND:
            raise ArtifactUnavailable(f"{artifact.name}: {artifact.sha256} is not on the server")
        if code.class_ == 5:
            raise TransientFetchError(f"{artifact.name}: CoAP {code.dotted}")
        block2 = response.opt.block2
        if code != Code.CONTENT or block2 is None or block2.block_number != number:
            raise DownloadFailed(f"{artifact.name}: block {number}: unexpected {code.dotted}")
        if block2.size_exponent != self._szx:
            raise DownloadFailed(f"{artifact.name}: server changed the block size")
        return _Block(bytes(response.payload), bool(block2.more), response.opt.etag)


def _resume(artifact: ArtifactRef, part: Path, size: int) -> tuple[ArtifactVerifier, int]:
    """Keep whole blocks of ``part``; a verifier that has seen them, and the next block."""
    verifier = ArtifactVerifier(name=artifact.name, length=artifact.length, sha256=artifact.sha256)
    if not part.exists():
        return verifier, 0
    kept = part.stat().st_size // size * size
    if kept > artifact.length:
        part.unlink()
        return verifier, 0
    with part.open("r+b") as handle:
        handle.truncate(kept)
        while chunk := handle.read(CHUNK):
            verifier.update(chunk)
    return verifier, kept // size


class CoapDeviceLink:
    """One device's observation of ``/m/{id}`` and its ordered status uploads."""

    def __init__(
        self,
        context: Any,
        base_uri: str,
        *,
        device_id: str,
        on_desired: Callable[[bytes], None],
        rng: random.Random,
        tuning: TransportTuning | None = None,
        reregister_after: float | None = None,
    ) -> None:
        self.device_id = device_id
        self._context = context
        self._base = base_uri.rstrip("/")
        self._on_desired = on_desired
        self._rng = rng
        self._tuning = tuning or CoapTuning()
        self._reregister_after = reregister_after
        self._outbox: asyncio.Queue[Envelope] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._observe(), name=f"{self.device_id}:observe"),
            asyncio.create_task(self._send_statuses(), name=f"{self.device_id}:status"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def send_status(self, report: StatusReport, envelope: Envelope) -> None:
        self._outbox.put_nowait(envelope)

    # -- observing -----------------------------------------------------------------------

    async def _observe(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._observe_once()
                delay = 0.2
            except error.Error as exc:
                log.info("%s: observation failed (%s); registering again", self.device_id, exc)
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, 10.0)

    async def _observe_once(self) -> None:
        request = Message(
            code=Code.GET,
            uri=f"{self._base}/m/{self.device_id}",
            observe=0,
            transport_tuning=self._tuning,
        )
        pending = self._context.request(request)
        try:
            first = await pending.response
            self._deliver(first)
            if not first.code.is_successful():
                await asyncio.sleep(5.0 * (0.5 + self._rng.random()))
                return
            lifetime = self._reregister_after or float(first.opt.max_age or 60)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(lifetime * (0.75 + 0.25 * self._rng.random())):
                    async for notification in pending.observation:
                        self._deliver(notification)
        finally:
            if not pending.observation.cancelled:
                pending.observation.cancel()

    def _deliver(self, response: Message) -> None:
        if response.code.is_successful() and response.payload:
            self._on_desired(bytes(response.payload))
        elif not response.code.is_successful():
            log.warning("%s: /m answered %s", self.device_id, response.code.dotted)

    # -- status --------------------------------------------------------------------------

    async def _send_statuses(self) -> None:
        while True:
            envelope = await self._outbox.get()
            await self._post_until_acknowledged(envelope.to_bytes())

    async def _post_until_acknowledged(self, body: bytes) -> None:
        delay = 0.2
        while True:
            request = Message(
                code=Code.POST,
                uri=f"{self._base}/s/{self.device_id}",
                payload=body,
                content_format=ContentFormat.JSON,
                transport_tuning=self._tuning,
            )
            try:
                response = await self._context.request(request).response
            except (error.NetworkError, oscore.NotAProtectedMessage) as exc:
                # An unprotected answer is the server not knowing these keys (yet).
                log.info("%s: status not acknowledged (%s); again", self.device_id, exc)
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, 5.0)
                continue
            if not response.code.is_successful():
                log.error("%s: status refused: %s", self.device_id, response.code.dotted)
            return
