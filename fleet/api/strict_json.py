"""One strict JSON reader for every request body, as envelopes already have.

FastAPI parses JSON bodies with ``json.loads``, which keeps the last of two equal keys
(``{"role": "viewer", "role": "admin"}`` is an admin), accepts ``NaN`` and integers no
JSON peer can hold. Every route reads its body through ``schemas.strict_loads`` instead
(the parser devices and the signer use): a repeated key, a non-finite number or an
integer beyond ±(2**53 - 1) is a 400 problem with the reader's code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from schemas import DocumentError, strict_loads

__all__ = ["BodyRefused", "StrictJsonRoute"]

# BodyLimit (fleet/api/middleware.py) bounds the bytes before the reader sees them.
_NO_SECOND_CAP = 1 << 40


class BodyRefused(HTTPException):
    """An HTTPException so FastAPI passes it through its body reading untouched."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(400, detail)
        self.code = code


class _Refused:
    """Stands in for a body the reader refused. FastAPI then goes on to check the caller,
    so a request without a valid token is a 401 (or 403) whatever its body, and fails
    the body's validation, where the route reports the reader's own error instead.
    No route takes an untyped body, so validation cannot accept it."""


class _StrictJsonRequest(Request):
    refused: BodyRefused | None = None

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = strict_loads(
                    await self.body(), cap=_NO_SECOND_CAP, what="the request body"
                )
            except DocumentError as exc:
                code = "bad_request" if exc.code == "malformed" else exc.code
                self.refused = BodyRefused(code, str(exc))
                self._json = _Refused()
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            reading = _StrictJsonRequest(request.scope, request.receive)
            try:
                return await handler(reading)
            except RequestValidationError:
                if reading.refused is not None:
                    raise reading.refused from None
                raise

        return strict
