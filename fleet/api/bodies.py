"""Raw request bodies: uploads streamed into sync services, small bodies read under a cap.

An upload is never held in memory. ``stream_into`` runs the (sync, blocking) consumer
in a worker thread and hands it an iterator whose every ``next()`` pulls one chunk of
the request from the event loop (``anyio.from_thread.run``): the consumer writes each
chunk before the next is read, so back-pressure reaches the client, and a consumer
that stops early (a size cap crossed) stops the reading too. A declared
``Content-Length`` over the cap is refused before a byte is read.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import anyio.from_thread
import anyio.to_thread
from fastapi import Request
from starlette.requests import ClientDisconnect

from fleet.api.problems import ProblemError

__all__ = ["media_type_of", "read_body", "stream_into"]

T = TypeVar("T")

# RFC 6838 §4.2 restricted names: what a stored artifact's media type may be.
_RESTRICTED_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}"
_MEDIA_TYPE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")
# What browsers and curl send for a body given without a type: never an artifact's type.
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/")


def _refuse_declared_over(request: Request, max_length: int, too_large: str) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise ProblemError(f"Content-Length {declared[:32]!r} is not a byte count")
    # Length first: int() of thousands of digits is slow, and past 4,300 it raises.
    if len(declared) > 18 or int(declared) > max_length:
        raise ProblemError(
            f"the body declares {declared[:24]} bytes; the limit is {max_length}",
            status=413,
            code=too_large,
        )


async def stream_into(
    request: Request,
    consume: Callable[[Iterator[bytes]], T],
    *,
    max_length: int,
    too_large: str = "too_large",
) -> T:
    """Run ``consume(chunks)`` in a worker thread, feeding it the request body.

    An empty body is refused (422 ``empty_body``) before ``consume`` is called.
    """
    _refuse_declared_over(request, max_length, too_large)
    body = request.stream()
    first = await _next_nonempty(body)
    if first is None:
        raise ProblemError("the request body is empty", status=422, code="empty_body")

    async def next_chunk() -> bytes | None:
        return await _next_nonempty(body)

    def chunks() -> Iterator[bytes]:
        chunk: bytes | None = first
        while chunk is not None:
            yield chunk
            chunk = anyio.from_thread.run(next_chunk)

    try:
        return await anyio.to_thread.run_sync(consume, chunks())
    finally:
        await body.aclose()


async def read_body(request: Request, *, max_length: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``max_length``."""
    _refuse_declared_over(request, max_length, "too_large")
    body = request.stream()
    received = bytearray()
    while (chunk := await _next_nonempty(body)) is not None:
        received += chunk
        if len(received) > max_length:
            raise ProblemError(
                f"the body passed the {max_length}-byte limit", status=413, code="too_large"
            )
    return bytes(received)


async def _next_nonempty(body: AsyncIterator[bytes]) -> bytes | None:
    """The next non-empty chunk, or None at the end of the body."""
    try:
        while (chunk := await anext(body, None)) is not None:
            if chunk:
                return chunk
    except ClientDisconnect as exc:
        raise ProblemError("the client went away mid-body", code="incomplete_body") from exc
    return None


def media_type_of(request: Request) -> str:
    """The request's media type without parameters, or 415 if it is not one to store."""
    raw = request.headers.get("content-type")
    if raw is None:
        raise ProblemError(
            "give the artifact's media type in Content-Type", status=415, code="media_type_required"
        )
    media_type = raw.split(";", 1)[0].strip().lower()
    if not _MEDIA_TYPE.fullmatch(media_type) or media_type.startswith(_FORM_TYPES):
        raise ProblemError(
            f"Content-Type {raw[:80]!r} is not an artifact media type "
            "(curl: --data-binary @file -H 'Content-Type: application/octet-stream')",
            status=415,
            code="unsupported_media_type",
        )
    return media_type
