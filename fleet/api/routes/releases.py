"""Releases: offline-signed manifests the server verifies and stores, and never signs.

The request body is the DSSE envelope exactly as ``fleet-sign release`` wrote it; it is
verified against the pinned root (a threshold of release keys) and stored byte for byte.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool

from fleet.api.bodies import read_body
from fleet.api.context import ApiContext
from fleet.api.deps import ContextDep, OperatorDep, ViewerDep
from fleet.api.models.common import Digest, Name, problem_responses
from fleet.api.models.delivery import ReleaseList, ReleasePublic, ReleaseSummary
from fleet.api.problems import ProblemError
from fleet.api.routes import API_PREFIX
from fleet.api.strict_json import StrictJsonRoute
from fleet.domain.records import Release
from fleet.services import queries
from fleet.services.releases import register_release
from schemas import Envelope
from schemas.dsse import DEFAULT_ENVELOPE_CAP

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/releases", tags=["releases"], route_class=StrictJsonRoute)


def _inline_envelope_schema() -> dict[str, Any]:
    """The envelope's JSON Schema exactly as the parser holds it (no extra members),
    with its one ``$defs`` entry inlined, since OpenAPI would resolve it elsewhere."""
    schema = Envelope.model_json_schema()
    signature = schema.pop("$defs")["Signature"]
    schema["properties"]["signatures"]["items"] = signature
    return schema


_ENVELOPE_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "the DSSE envelope written by `fleet-sign release`, "
            f"at most {DEFAULT_ENVELOPE_CAP} bytes"
        ),
        "content": {
            "application/json": {
                "schema": _inline_envelope_schema(),
            }
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_ENVELOPE_BODY,
    responses={
        200: {"model": ReleaseSummary, "description": "already registered (same digest)"},
        **problem_responses(401, 403, 404, 413, 415, 422),
    },
)
async def register(
    request: Request, response: Response, context: ContextDep, caller: OperatorDep
) -> ReleaseSummary:
    """Verify and register a signed release: 201 if new, 200 if already registered.

    Refusals are 422 with the refusal's code: `signature_invalid`, `threshold_not_met`,
    `untrusted_key`, `wrong_role_key`, `malformed`, `too_large`, `duplicate_key`,
    `wrong_payload_type`, `artifact_missing`, `artifact_length_mismatch`;
    `release_incompatible` when the model does not fit the firmware's declaration or the
    device class (every violation in `violations`, each with its code: `missing_ops`,
    `unsupported_ops`, `ram_exceeded`, `flash_exceeded`, `tensor_contract`); and a model
    inspection refuses with inspection's code (`wrong_identifier`, `malformed`, ...).
    """
    _require_json(request)
    data = await read_body(request, max_length=DEFAULT_ENVELOPE_CAP)
    release, new = await run_in_threadpool(_register, context, data, caller.name)
    if not new:
        response.status_code = status.HTTP_200_OK
    return ReleaseSummary.from_record(release)


@router.get("", responses=problem_responses(401, 422))
def list_all(context: ContextDep, _: ViewerDep, device_class: Name | None = None) -> ReleaseList:
    """Registered releases, newest first."""
    releases = queries.list_releases(context.new_uow(), device_class=device_class)
    return ReleaseList(items=[ReleaseSummary.from_record(r) for r in releases])


@router.get("/{digest}", responses=problem_responses(401, 404, 422))
def get_one(digest: Digest, context: ContextDep, _: ViewerDep) -> ReleasePublic:
    """The release's decoded manifest and the envelope exactly as signed."""
    return ReleasePublic.from_record(queries.get_release(context.new_uow(), digest))


def _require_json(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ProblemError(
            "send the envelope as application/json", status=415, code="unsupported_media_type"
        )


def _register(context: ApiContext, data: bytes, actor: str) -> tuple[Release, bool]:
    return register_release(
        context.new_uow(),
        context.blobs,
        data,
        root=context.root(),
        actor=actor,
        now=context.clock(),
    )
