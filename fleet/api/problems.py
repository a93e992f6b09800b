"""RFC 9457 problem details: every API error becomes ``application/problem+json``.

Service errors carry a stable ``code`` and an HTTP status; they are mapped to responses
here and only here. Anything unexpected is logged as our bug and answered 500 without
internals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from fleet.services.errors import (
    ArtifactTooLarge,
    ConflictError,
    InvalidInput,
    ModelRefused,
    NotFoundError,
    ReleaseRejected,
    ServiceError,
)
from fleet.services.ports import (
    BlobNotFound,
    BlobTooLarge,
    Conflict,
    NotFound,
    RangeNotSatisfiable,
    StoreError,
    StoreUnavailable,
)

__all__ = ["ProblemError", "install_problem_handlers", "problem_response"]

PROBLEM_TYPE_BASE = "https://tinyfleet.dev/problems/"
_log = structlog.get_logger(__name__)


class ProblemError(Exception):
    """An error the API reports as a problem document: ``status`` + stable ``code``."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.extra = extra or {}
        self.headers = dict(headers or {})


def problem_response(
    request: Request, *, status: int, code: str, detail: str, extra: dict[str, Any] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": code.replace("_", " "),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
}


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    response = problem_response(
        request, status=exc.status, code=exc.code, detail=exc.detail, extra=exc.extra
    )
    response.headers.update(exc.headers)
    return response


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    detail = f"{'.'.join(first['loc'])}: {first['msg']}" if first["loc"] else str(first["msg"])
    return problem_response(
        request, status=422, code="validation_failed", detail=detail, extra={"errors": errors}
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = getattr(exc, "code", None) or _HTTP_CODES.get(exc.status_code, "http_error")
    response = problem_response(request, status=exc.status_code, code=code, detail=str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path: Starlette names only the first
    route whose path matched, and FastAPI makes one route per method."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


_SERVICE_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (ArtifactTooLarge, 413),
    (ReleaseRejected, 422),
    (ModelRefused, 422),
    (InvalidInput, 422),
    (BlobNotFound, 404),
    (NotFound, 404),
    (RangeNotSatisfiable, 416),
    (BlobTooLarge, 413),
    (Conflict, 409),
    (StoreUnavailable, 503),
)


def _status_of(exc: Exception) -> int:
    return next((status for kind, status in _SERVICE_STATUS if isinstance(exc, kind)), 400)


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError | StoreError)
    code: str = exc.code
    extra = exc.extra if isinstance(exc, ServiceError) else None
    response = problem_response(
        request, status=_status_of(exc), code=code, detail=str(exc), extra=extra
    )
    if isinstance(exc, StoreUnavailable):  # nothing was committed: the same request may retry
        response.headers["Retry-After"] = "1"
    return response


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.error("unhandled_error", path=request.url.path, exc_info=exc)
    return problem_response(
        request, status=500, code="internal_error", detail="internal error; see server logs"
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(ServiceError, _on_domain_error)
    app.add_exception_handler(StoreError, _on_domain_error)
    app.add_exception_handler(Exception, _on_unexpected)
