"""Staged rollouts: create, list, show progress, and the operator's actions."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from fleet.api.deps import ContextDep, OperatorDep, ViewerDep
from fleet.api.models.common import problem_responses
from fleet.api.models.rollouts import (
    PlanError,
    RolloutCreate,
    RolloutCreated,
    RolloutDetail,
    RolloutId,
    RolloutList,
    RolloutPublic,
)
from fleet.api.problems import ProblemError
from fleet.api.routes import API_PREFIX
from fleet.api.strict_json import StrictJsonRoute
from fleet.domain.rollout_plan import plan_to_json
from fleet.services.rollouts import (
    act_on_rollout,
    create_rollout,
    list_rollouts,
    rollout_progress,
)

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/rollouts", tags=["rollouts"], route_class=StrictJsonRoute)
Action = Literal["approve", "pause", "resume", "abort", "rollback"]


@router.post("", status_code=201, responses=problem_responses(401, 403, 404, 409, 422))
def create(body: RolloutCreate, context: ContextDep, caller: OperatorDep) -> RolloutCreated:
    """Snapshot the targeted devices and wait for `approve`. 422 `invalid_plan` for a
    plan whose waves shrink or mix percents and counts. Devices in another active rollout,
    or whose reported firmware is below the release's signed `min_firmware_version`, are
    left out, and `left_out` names them. 409 `release_untrusted` if the release's
    signatures no longer verify under the current root."""
    try:
        plan = body.plan.to_domain()
    except PlanError as exc:
        raise ProblemError(str(exc), status=422, code=exc.code) from exc
    created = create_rollout(
        context.new_uow(),
        release_digest=body.release_digest,
        plan=plan,
        target=body.target.to_domain(),
        root=context.root(),
        actor=caller.name,
        now=context.clock(),
        rollout_id=body.id,
    )
    return RolloutCreated.from_created(created)


@router.get("", responses=problem_responses(401, 403))
def list_all(context: ContextDep, _caller: ViewerDep, active: bool = False) -> RolloutList:
    rollouts = list_rollouts(context.new_uow(), active_only=active)
    return RolloutList(items=[RolloutPublic.from_domain(r) for r in rollouts])


@router.get("/{rollout_id}", responses=problem_responses(401, 403, 404))
def show(rollout_id: RolloutId, context: ContextDep, _caller: ViewerDep) -> RolloutDetail:
    """The rollout, its devices per wave by state, rollback outcomes and its events."""
    progress = rollout_progress(context.new_uow(), rollout_id)
    return RolloutDetail.from_progress(progress, plan_to_json(progress.rollout.plan))


@router.post("/{rollout_id}/{action}", responses=problem_responses(401, 403, 404, 409, 422))
def act(
    rollout_id: RolloutId, action: Action, context: ContextDep, caller: OperatorDep
) -> RolloutPublic:
    """Approve, pause, resume, abort or roll back; 409 `invalid_transition` if the
    rollout's state does not allow it (a finished rollout never changes), 409
    `release_untrusted` on approve or resume if the current root no longer vouches
    for the release."""
    rollout = act_on_rollout(
        context.new_uow(),
        context.director,
        rollout_id,
        action,
        actor=caller.name,
        now=context.clock(),
        root=context.root(),
    )
    context.on_directions_queued()
    return RolloutPublic.from_domain(rollout)
