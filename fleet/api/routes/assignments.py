"""Assignments: direct a release to chosen devices, outside any rollout."""

from __future__ import annotations

from fastapi import APIRouter

from fleet.api.deps import ContextDep, OperatorDep
from fleet.api.models.common import Digest, problem_responses
from fleet.api.models.delivery import AssignmentCreate, AssignmentPublic, AssignmentResult
from fleet.api.routes import API_PREFIX
from fleet.api.strict_json import StrictJsonRoute
from fleet.services.assignments import assign_release

__all__ = ["router"]

router = APIRouter(
    prefix=f"{API_PREFIX}/releases", tags=["assignments"], route_class=StrictJsonRoute
)


@router.post("/{digest}/assign", responses=problem_responses(401, 403, 404, 409, 413, 422))
def assign(
    digest: Digest, body: AssignmentCreate, context: ContextDep, caller: OperatorDep
) -> AssignmentResult:
    """Sign one director manifest per device (all or none) and queue them for delivery.

    Refused with 404 if the release or a device is unknown, and 422
    `device_class_mismatch` if a device is of another class than the release; 409
    `device_in_rollout` (naming each device's rollout) if a device is held by an active
    rollout, unless `detach_from_rollouts` takes it out of that rollout; 409
    `release_untrusted` if the release's signatures no longer verify under the current
    root (a release key revoked since it was registered).
    """
    records = assign_release(
        context.new_uow(),
        context.director,
        digest,
        body.device_ids,
        root=context.root(),
        actor=caller.name,
        now=context.clock(),
        detach_from_rollouts=body.detach_from_rollouts,
    )
    context.on_directions_queued()
    return AssignmentResult(
        release_digest=digest,
        count=len(records),
        assignments=[AssignmentPublic.from_record(r) for r in records],
    )
