"""Artifacts, offline-signed releases and their assignment to devices."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from fleet.api.models.common import (
    MAX_BULK_DEVICES,
    DeviceId,
    Digest,
    RequestModel,
    ResponseModel,
)
from fleet.domain.records import Artifact, DirectorRecord, Release
from schemas import Envelope, ReleaseManifest, decode_payload

__all__ = [
    "ArtifactList",
    "ArtifactPublic",
    "AssignmentCreate",
    "AssignmentPublic",
    "AssignmentResult",
    "ReleaseList",
    "ReleasePublic",
    "ReleaseSummary",
]


class ArtifactPublic(ResponseModel):
    sha256: Digest
    length: int
    media_type: str
    created_at: datetime

    @classmethod
    def from_record(cls, record: Artifact) -> ArtifactPublic:
        return cls(
            sha256=record.sha256,
            length=record.length,
            media_type=record.media_type,
            created_at=record.created_at,
        )


class ArtifactList(ResponseModel):
    items: list[ArtifactPublic]


class ReleaseSummary(ResponseModel):
    digest: Digest = Field(description="sha256 of the envelope's payload bytes")
    name: str
    version: str
    device_class: str
    registered_at: datetime

    @classmethod
    def from_record(cls, record: Release) -> ReleaseSummary:
        return cls(
            digest=record.digest,
            name=record.name,
            version=record.version,
            device_class=record.device_class,
            registered_at=record.created_at,
        )


class ReleasePublic(ReleaseSummary):
    """A release as registered: the envelope exactly as signed, and its decoded payload."""

    manifest: ReleaseManifest
    envelope: Envelope

    @classmethod
    def from_record(cls, record: Release) -> ReleasePublic:
        envelope = Envelope.model_validate_json(record.envelope_json)
        summary = ReleaseSummary.from_record(record)
        return cls(
            **summary.model_dump(),
            manifest=decode_payload(envelope, ReleaseManifest),
            envelope=envelope,
        )


class ReleaseList(ResponseModel):
    items: list[ReleaseSummary]


class AssignmentCreate(RequestModel):
    device_ids: list[DeviceId] = Field(min_length=1, max_length=MAX_BULK_DEVICES)
    detach_from_rollouts: bool = Field(
        default=False,
        description="take devices held by an active rollout out of it (audited) instead "
        "of refusing with 409 device_in_rollout",
    )


class AssignmentPublic(ResponseModel):
    device_id: str
    sequence: int

    @classmethod
    def from_record(cls, record: DirectorRecord) -> AssignmentPublic:
        return cls(device_id=record.device_id, sequence=record.sequence)


class AssignmentResult(ResponseModel):
    release_digest: Digest
    count: int
    assignments: list[AssignmentPublic]
