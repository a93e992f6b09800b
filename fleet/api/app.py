"""The admin API as an ASGI app: versioned routes, problem+json errors, health and metrics.

``fleet/app.py`` builds an ``ApiContext`` and calls ``create_api`` once; nothing here
runs at import time, so tests build as many apps as they like::

    app = create_api(context)
    uvicorn.run(app, host=settings.http_host, port=settings.http_port)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field

from fleet.api.context import ApiContext
from fleet.api.deps import ContextDep
from fleet.api.middleware import ApiRateLimit, BodyLimit, RequestIds, RequestMetrics
from fleet.api.models.common import ResponseModel, problem_responses
from fleet.api.openapi import install_openapi
from fleet.api.problems import ProblemError, install_problem_handlers
from fleet.api.routes import (
    API_PREFIX,
    artifacts,
    assignments,
    audit,
    calibration,
    device_classes,
    devices,
    models,
    releases,
    rollouts,
    telemetry,
    tokens,
)

__all__ = ["JSON_BODY_LIMIT", "create_api"]

# The largest JSON body: a bulk enrollment of 10,000 devices with a few tags each.
JSON_BODY_LIMIT = 8 * 1024 * 1024
_RESOURCES = (
    device_classes, devices, calibration, artifacts, models, releases, assignments, audit,
    tokens, rollouts, telemetry,
)  # fmt: skip
# Artifact uploads stream under ``ApiContext.max_artifact_bytes`` instead.
_STREAMED_UPLOADS = {("POST", f"{API_PREFIX}/artifacts")}

_DESCRIPTION = """\
Fleet OTA for TinyML microcontrollers. Every endpoint but `GET /healthz`, `GET /readyz`,
`GET /metrics` and artifact downloads needs `Authorization: Bearer <token>`; a token's
role (viewer < operator < admin) decides what it may do. Errors are RFC 9457
`application/problem+json` documents whose `code` is stable. See docs/api.md.
"""


class Health(ResponseModel):
    status: str


class Ready(ResponseModel):
    status: str = Field(description='"ready"')
    checks: dict[str, str] = Field(description='check name → "ok" (each of them, when ready)')


def create_api(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="tinyfleet admin API",
        version=_package_version(),
        description=_DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.context = context
    install_problem_handlers(app)
    install_openapi(app)
    for resource in _RESOURCES:
        app.include_router(resource.router)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["operations"])
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        tags=["operations"],
        responses={503: problem_responses(503)[503] | {"description": "not ready; see checks"}},
    )
    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus"}},
    )
    # Added last is outermost: latency is measured around the body limit's refusals too.
    app.add_middleware(BodyLimit, limit=JSON_BODY_LIMIT, exempt=_STREAMED_UPLOADS)
    if context.api_rates is not None:  # outside the body limit: a flood is refused first
        app.add_middleware(
            ApiRateLimit,
            limiter=context.rate_limiter,
            rates=context.api_rates,
            metrics=context.metrics,
            exempt=_not_admin_api,
        )
    app.add_middleware(RequestMetrics, metrics=context.metrics)
    app.add_middleware(RequestIds)
    return app


def _not_admin_api(method: str, path: str) -> bool:
    """Health, metrics and device artifact downloads are not rate limited per client: a
    fleet behind one NAT downloads from one address."""
    if path in ("/healthz", "/readyz", "/metrics"):
        return True
    return method in ("GET", "HEAD") and path.startswith(f"{API_PREFIX}/artifacts/")


def healthz() -> Health:
    """Liveness: the process answers. No token needed."""
    return Health(status="ok")


def readyz(context: ContextDep) -> Ready:
    """Readiness: the database reachable and at the migrations' head, the broker
    connected, not draining. 503 ``not_ready`` with each check's outcome otherwise (a
    load balancer stops sending requests). No token needed."""
    checks = dict(context.readiness())
    failing = {name: outcome for name, outcome in checks.items() if outcome != "ok"}
    if failing:
        detail = "; ".join(f"{name}: {outcome}" for name, outcome in sorted(failing.items()))
        raise ProblemError(detail, status=503, code="not_ready", extra={"checks": checks})
    return Ready(status="ready", checks=checks)


def metrics(context: ContextDep) -> Response:
    """Prometheus text exposition of this server's registry. No token needed."""
    return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _package_version() -> str:
    try:
        return version("tinyfleet")
    except PackageNotFoundError:
        return "0+unknown"
