"""Artifacts: content-addressed blobs, uploaded by operators and downloaded by devices.

Downloads need no token: an artifact is trusted because a signed release names its
sha256 and length, never because of where it came from (docs/architecture.md §2).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status

from fleet.api.artifact_response import ArtifactResponse, etag_matches
from fleet.api.bodies import media_type_of, stream_into
from fleet.api.deps import ContextDep, OperatorDep, ViewerDep
from fleet.api.models.common import Digest, problem_responses
from fleet.api.models.delivery import ArtifactList, ArtifactPublic
from fleet.api.routes import API_PREFIX
from fleet.api.strict_json import StrictJsonRoute
from fleet.domain.records import Artifact
from fleet.services import queries
from fleet.services.artifacts import store_artifact

__all__ = ["router"]

router = APIRouter(
    prefix=f"{API_PREFIX}/artifacts", tags=["artifacts"], route_class=StrictJsonRoute
)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        # Any Content-Type is taken (and stored as the media type); only octet-stream is
        # listed, since a generator would otherwise encode "a string" as YAML or JSON text.
        "description": "the artifact's bytes; Content-Type (any) is stored as its media type",
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "minLength": 1}
            }
        },
    }
}
_BYTES = {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}
_DOWNLOAD_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "the whole artifact", **_BYTES},
    206: {"description": "the requested byte range", **_BYTES},
    304: {"description": "If-None-Match named this artifact"},
    **problem_responses(404, 416, 422),
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": ArtifactPublic, "description": "already stored (same sha256)"},
        **problem_responses(400, 401, 403, 413, 415, 422),
    },
)
async def upload(
    request: Request, response: Response, context: ContextDep, caller: OperatorDep
) -> ArtifactPublic:
    """Stream the request body into the blob store: 201 if new, 200 if already there."""
    store = partial(
        store_artifact,
        context.new_uow(),
        context.blobs,
        media_type=media_type_of(request),
        max_length=context.max_artifact_bytes,
        actor=caller.name,
        now=context.clock(),
    )
    artifact, new = await stream_into(
        request, store, max_length=context.max_artifact_bytes, too_large="artifact_too_large"
    )
    if not new:
        response.status_code = status.HTTP_200_OK
    return ArtifactPublic.from_record(artifact)


@router.get("", responses=problem_responses(401))
def list_all(context: ContextDep, _: ViewerDep) -> ArtifactList:
    artifacts = queries.list_artifacts(context.new_uow())
    return ArtifactList(items=[ArtifactPublic.from_record(a) for a in artifacts])


@router.get("/{sha256}", response_class=Response, responses=_DOWNLOAD_RESPONSES)
def download(
    sha256: Digest,
    context: ContextDep,
    range_: Annotated[str | None, Header(alias="range")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Download an artifact (no token needed): whole, one byte range or several."""
    artifact = queries.get_artifact(context.new_uow(), sha256)
    headers = _entity_headers(artifact)
    if etag_matches(if_none_match, headers["ETag"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    ArtifactResponse.refuse_unsatisfiable(range_, artifact.length)
    return _file_response(artifact, context.blobs.path_of(sha256))


@router.head("/{sha256}", response_class=Response, responses=problem_responses(404, 422))
def head(sha256: Digest, context: ContextDep) -> Response:
    """The download's headers without its body."""
    artifact = queries.get_artifact(context.new_uow(), sha256)
    return _file_response(artifact, context.blobs.path_of(sha256))


def _file_response(artifact: Artifact, path: Path) -> ArtifactResponse:
    return ArtifactResponse(
        path,
        headers=_entity_headers(artifact),
        media_type=artifact.media_type,
        content_disposition_type="inline",
    )


def _entity_headers(artifact: Artifact) -> dict[str, str]:
    return {
        "ETag": f'"{artifact.sha256}"',
        "Accept-Ranges": "bytes",
        # The same name always means the same bytes.
        "Cache-Control": "public, max-age=31536000, immutable",
    }
