"""FastAPI dependencies: the context, the unit of work, and the caller's role."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fleet.api.context import ApiContext
from fleet.api.problems import ProblemError
from fleet.domain.records import ApiToken, Role
from fleet.services.tokens import authenticate

__all__ = [
    "AdminDep",
    "ContextDep",
    "OperatorDep",
    "ViewerDep",
]

_bearer = HTTPBearer(auto_error=False)
# RFC 6750 §3: a 401 names the scheme the client should use.
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


def _caller(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(
            "a bearer token is required", status=401, code="unauthenticated", headers=_CHALLENGE
        )
    token = authenticate(context.new_uow(), credentials.credentials)
    if token is None:
        raise ProblemError(
            "unknown or revoked token", status=401, code="unauthenticated", headers=_CHALLENGE
        )
    return token


def _requires(role: Role) -> object:
    def check(token: Annotated[ApiToken, Depends(_caller)]) -> ApiToken:
        if _RANK[token.role] < _RANK[role]:
            raise ProblemError(
                f"this needs the {role.value} role; the token has {token.role.value}",
                status=403,
                code="forbidden",
            )
        return token

    return Depends(check)


ViewerDep = Annotated[ApiToken, _requires(Role.VIEWER)]
OperatorDep = Annotated[ApiToken, _requires(Role.OPERATOR)]
AdminDep = Annotated[ApiToken, _requires(Role.ADMIN)]
