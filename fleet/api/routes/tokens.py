"""API tokens: bearer secrets for people and scripts, each with one role."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from fleet.api.deps import AdminDep, ContextDep
from fleet.api.models.admin import TokenCreate, TokenCreated, TokenList, TokenPublic
from fleet.api.models.common import Name, problem_responses
from fleet.api.routes import API_PREFIX
from fleet.api.strict_json import StrictJsonRoute
from fleet.services.tokens import issue_token, list_tokens, revoke_token

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/tokens", tags=["tokens"], route_class=StrictJsonRoute)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 413, 422),
)
def create(body: TokenCreate, context: ContextDep, caller: AdminDep) -> TokenCreated:
    """Create a token; its secret is in this response and nowhere else, ever."""
    secret, token = issue_token(
        context.new_uow(), name=body.name, role=body.role, actor=caller.name, now=context.clock()
    )
    return TokenCreated(**TokenPublic.from_record(token).model_dump(), secret=secret)


@router.get("", responses=problem_responses(401, 403))
def list_all(context: ContextDep, _: AdminDep) -> TokenList:
    """Every token's name, role and state; secrets are not kept, so never shown."""
    return TokenList(items=[TokenPublic.from_record(t) for t in list_tokens(context.new_uow())])


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def revoke(name: Name, context: ContextDep, caller: AdminDep) -> None:
    """Revoke the active token with this name; the last admin token cannot be revoked."""
    revoke_token(context.new_uow(), name, actor=caller.name, now=context.clock())
