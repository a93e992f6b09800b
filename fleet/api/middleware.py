"""Pure ASGI middleware: request ids for logs, a cap on request bodies, request latency,
and rate limits per client address and per token.

``BodyLimit`` refuses a body over its limit with a 413 problem document — at once when
``Content-Length`` says so, otherwise as soon as the streamed bytes pass it (the error
is raised from ``receive``, inside the route, so the problem handlers answer it). Upload
routes stream their bodies under their own, larger caps and are exempt.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Collection

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.api.problems import problem_response
from fleet.observability import Metrics
from fleet.ratelimit import ApiRates, RateLimiter

__all__ = ["ApiRateLimit", "BodyLimit", "RequestIds", "RequestMetrics"]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PROBE_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_log = structlog.get_logger(__name__)


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


class ApiRateLimit:
    """429 with ``Retry-After`` once a client address or a bearer token passes its rate.

    Checked before routing, so before the token is looked up or a body is read: a flood
    costs a counter, not a database query. The token is keyed by its hash (never kept),
    whether or not it is valid; an address is the ASGI client (behind a proxy, run the
    server with the proxy's forwarded headers trusted). ``exempt`` says which requests
    are not the admin API's: health, metrics and device artifact downloads.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        rates: ApiRates,
        metrics: Metrics,
        exempt: Callable[[str, str], bool],
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.rates = rates
        self.metrics = metrics
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.exempt(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        refused = self._refusal(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        over, wait = refused
        self.metrics.rate_limited.labels(scope=over).inc()
        response = problem_response(
            Request(scope),
            status=429,
            code="rate_limited",
            detail=f"too many requests from this {over}; retry in {wait} s",
            extra={"limit": over},
        )
        response.headers["Retry-After"] = str(wait)
        await response(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[str, int] | None:
        client = scope.get("client")
        address = client[0] if client else "unknown"
        wait = self.limiter.try_hit(self.rates.per_address, "api-address", address)
        if wait is not None:
            return "address", wait
        authorization = Headers(scope=scope).get("authorization", "")
        if not authorization:
            return None
        token = hashlib.sha256(authorization.encode()).hexdigest()
        wait = self.limiter.try_hit(self.rates.per_token, "api-token", token)
        return None if wait is None else ("token", wait)


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
            seconds = time.perf_counter() - started
            self.metrics.http_requests.labels(
                method=scope["method"], route=route, status=str(status)
            ).observe(seconds)
            # Probes and scrapes come every few seconds: only at debug.
            log = _log.debug if route in _PROBE_ROUTES else _log.info
            log(
                "http_request",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=status,
                ms=round(seconds * 1000, 1),
            )


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
