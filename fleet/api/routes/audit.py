"""The audit log: every change, who made it (the token's name) and when."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleet.api.deps import ContextDep, ViewerDep
from fleet.api.models.admin import AuditEventPublic, AuditList
from fleet.api.models.common import CursorId, PageLimit, problem_responses
from fleet.api.routes import API_PREFIX
from fleet.api.strict_json import StrictJsonRoute
from fleet.services import queries

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/audit", tags=["audit"], route_class=StrictJsonRoute)

Subject = Annotated[
    str | None,
    Query(
        pattern=r"^[\x21-\x7e][\x20-\x7e]{0,255}$",
        description="only entries about this subject, e.g. `device:dev-00001`",
    ),
]


@router.get("", responses=problem_responses(401, 422))
def read(
    context: ContextDep,
    _: ViewerDep,
    subject: Subject = None,
    after: Annotated[CursorId | None, Query(description="the previous page's next_after")] = None,
    limit: PageLimit = 100,
) -> AuditList:
    """Audit entries, oldest first, from just after `after`: tail the log with the cursor."""
    events = queries.read_audit(context.new_uow(), subject=subject, after=after, limit=limit + 1)
    page = events[:limit]
    more = len(events) > limit
    return AuditList(
        items=[AuditEventPublic.from_record(e) for e in page],
        next_after=page[-1].id if more else None,
    )
