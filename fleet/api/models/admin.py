"""API tokens and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from fleet.api.models.common import Name, RequestModel, ResponseModel
from fleet.domain.records import ApiToken, AuditEvent, Role

__all__ = [
    "AuditEventPublic",
    "AuditList",
    "TokenCreate",
    "TokenCreated",
    "TokenList",
    "TokenPublic",
]


class TokenCreate(RequestModel):
    name: Name = Field(description="recorded as the actor of every change made with it")
    # Lax for the enum only: FastAPI validates parsed JSON, where a role is still a string.
    role: Role = Field(strict=False)


class TokenPublic(ResponseModel):
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None
    active: bool

    @classmethod
    def from_record(cls, record: ApiToken) -> TokenPublic:
        return cls(
            name=record.name,
            role=record.role,
            created_at=record.created_at,
            revoked_at=record.revoked_at,
            active=record.active,
        )


class TokenCreated(TokenPublic):
    secret: str = Field(description="shown once; the server keeps only its sha256")


class TokenList(ResponseModel):
    items: list[TokenPublic]


class AuditEventPublic(ResponseModel):
    id: int
    at: datetime
    actor: str = Field(description="the name of the token that made the change")
    action: str
    subject: str
    detail: dict[str, Any]

    @classmethod
    def from_record(cls, record: AuditEvent) -> AuditEventPublic:
        return cls(
            id=record.id,
            at=record.at,
            actor=record.actor,
            action=record.action,
            subject=record.subject,
            detail=record.detail,
        )


class AuditList(ResponseModel):
    items: list[AuditEventPublic]
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")
