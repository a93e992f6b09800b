"""API tokens: random secrets shown once, stored only as their sha256."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime

from fleet.domain.records import ApiToken, Role
from fleet.services.errors import ConflictError, NotFoundError
from fleet.store import UnitOfWork

__all__ = [
    "authenticate",
    "create_token",
    "issue_token",
    "list_tokens",
    "revoke_token",
    "token_digest",
]

TOKEN_PREFIX = "tf_"


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    uow: UnitOfWork,
    *,
    name: str,
    role: Role,
    actor: str,
    now: datetime,
    secret: str | None = None,
) -> tuple[str, ApiToken]:
    """Return the secret (never stored) and its record."""
    secret = secret or TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(token_sha256=token_digest(secret), name=name, role=role, created_at=now)
    with uow:
        if uow.tokens.get(token.token_sha256) is None:
            uow.tokens.add(token)
            uow.audit.append(
                at=now,
                actor=actor,
                action="token.create",
                subject=f"token:{name}",
                detail={"role": role.value},
            )
        uow.commit()
    return secret, token


def authenticate(uow: UnitOfWork, secret: str) -> ApiToken | None:
    with uow:
        token = uow.tokens.get(token_digest(secret))
    return token if token is not None and token.active else None


def issue_token(
    uow: UnitOfWork, *, name: str, role: Role, actor: str, now: datetime
) -> tuple[str, ApiToken]:
    """A new random token; refused while another active token has the same name.

    Names are what the audit log records as the actor, so two live tokens never share one.
    """
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(token_sha256=token_digest(secret), name=name, role=role, created_at=now)
    with uow:
        if any(t.active and t.name == name for t in uow.tokens.all()):
            raise ConflictError(f"an active token is named {name!r}", code="token_name_taken")
        uow.tokens.add(token)
        uow.audit.append(
            at=now,
            actor=actor,
            action="token.create",
            subject=f"token:{name}",
            detail={"role": role.value},
        )
        uow.commit()
    return secret, token


def list_tokens(uow: UnitOfWork) -> Sequence[ApiToken]:
    with uow:
        return uow.tokens.all()


def revoke_token(uow: UnitOfWork, name: str, *, actor: str, now: datetime) -> list[ApiToken]:
    """Revoke every active token named ``name``; the last active admin token is kept."""
    with uow:
        tokens = uow.tokens.all()
        named = [t for t in tokens if t.active and t.name == name]
        if not named:
            raise NotFoundError(f"no active token named {name!r}")
        admins_left = [t for t in tokens if t.active and t.role is Role.ADMIN and t.name != name]
        if any(t.role is Role.ADMIN for t in named) and not admins_left:
            raise ConflictError(
                f"{name!r} is the last active admin token; create another admin first",
                code="last_admin_token",
            )
        for token in named:
            uow.tokens.revoke(token.token_sha256, at=now)
        uow.audit.append(
            at=now,
            actor=actor,
            action="token.revoke",
            subject=f"token:{name}",
            detail={"count": len(named)},
        )
        uow.commit()
    return named
