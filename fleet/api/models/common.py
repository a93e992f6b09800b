"""What every API model shares: closed request bodies, bounded fields, problem documents.

Request models are strict and closed (``extra="forbid"``): a wrong JSON type or an
unknown field is refused with 422, never coerced or ignored. Response models are built
from ``fleet.domain.records`` values by their ``from_record`` class methods.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.common import DeviceId, Digest, Name

__all__ = [
    "MAX_BULK_DEVICES",
    "MAX_PAGE",
    "ByteSize",
    "CursorId",
    "DeviceId",
    "Digest",
    "Name",
    "OpName",
    "PageLimit",
    "Problem",
    "PublicKeyHex",
    "RequestModel",
    "ResponseModel",
    "Tag",
    "Tags",
    "problem_responses",
]

MAX_PAGE = 1000
MAX_BULK_DEVICES = 10_000
# Device classes are microcontrollers: 4 GiB of RAM or flash is far past any of them.
MAX_DEVICE_BYTES = 2**32
# A database BIGINT: cursors past it cannot name a row, and drivers refuse them.
MAX_CURSOR = 2**63 - 1

Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/=+-]{0,63}$")]
Tags = Annotated[list[Tag], Field(max_length=32, description="at most 32 tags")]
OpName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")]
PublicKeyHex = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="the device's raw Ed25519 public key, 64 lowercase hex characters"),
]
ByteSize = Annotated[int, Field(ge=1, le=MAX_DEVICE_BYTES)]
PageLimit = Annotated[int, Field(ge=1, le=MAX_PAGE)]
CursorId = Annotated[int, Field(ge=0, le=MAX_CURSOR)]


class RequestModel(BaseModel):
    """Strict (no "1" for 1, no unknown members), except that an integral number such
    as ``2.0`` is the integer JSON Schema says it is; a float field takes an int."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_numbers_are_integers(cls, data: Any) -> Any:
        return _integral(data)


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """An RFC 9457 problem document; ``code`` is the stable, machine-readable reason."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="for validation_failed: each field that was refused"
    )
    violations: list[dict[str, Any]] | None = Field(
        default=None, description="for release_incompatible: each violation's code and message"
    )


PROBLEM_DESCRIPTIONS = {
    400: "malformed request",
    401: "missing, unknown or revoked bearer token",
    403: "the token's role does not allow this",
    404: "no such resource",
    409: "conflicts with what exists",
    413: "request body over its limit",
    415: "wrong Content-Type",
    416: "byte range outside the artifact",
    422: "refused input; `code` says why",
    429: "too many requests from this address or token; see Retry-After",
    503: "the database is busy or unreachable; nothing was changed, retry after Retry-After",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem statuses a route can answer."""
    # Inline rather than ``model=``: FastAPI would file a model under application/json.
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": PROBLEM_DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": schema}},
        }
        for status in statuses
    }
