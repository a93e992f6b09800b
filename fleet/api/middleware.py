"""Pure ASGI middleware: request ids for logs, a cap on request bodies, request latency.

``BodyLimit`` refuses a body over its limit with a 413 problem document — at once when
``Content-Length`` says so, otherwise as soon as the streamed bytes pass it (the error
is raised from ``receive``, inside the route, so the problem handlers answer it). Upload
routes stream their bodies under their own, larger caps and are exempt.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Collection

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.api.problems import problem_response
from fleet.observability import Metrics

__all__ = ["BodyLimit", "RequestIds", "RequestMetrics"]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class BodyLimit:
    def __init__(
        self, app: ASGIApp, *, limit: int, exempt: Collection[tuple[str, str]] = ()
    ) -> None:
        self.app = app
        self.limit = limit
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.exempt:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        # Length first: int() of thousands of digits is slow, and past 4,300 it raises.
        if declared.isdigit() and (len(declared) > 18 or int(declared) > self.limit):
            response = problem_response(
                Request(scope),
                status=413,
                code="too_large",
                detail=f"the body declares {declared[:24]} bytes; the limit is {self.limit}",
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, f"the body passed the {self.limit}-byte limit")
            return message

        await self.app(scope, limited_receive, send)


class RequestMetrics:
    """Observe ``fleet_http_request_seconds`` by method, route template and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router leaves the matched route in the scope; its template keeps the
            # label set small (one per endpoint, not one per device id).
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.http_requests.labels(
                method=scope["method"], route=route, status=str(status)
            ).observe(time.perf_counter() - started)


class RequestIds:
    """Give every request an id (the caller's ``X-Request-ID`` or a new one), bind it to
    structlog's context for every log line the request causes, and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = Headers(scope=scope).get("x-request-id", "")
        request_id = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)
