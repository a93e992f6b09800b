"""Device classes: the hardware every device and release belongs to."""

from __future__ import annotations

from fastapi import APIRouter, status

from fleet.api.deps import ContextDep, OperatorDep, ViewerDep
from fleet.api.models.common import Name, problem_responses
from fleet.api.models.devices import DeviceClassCreate, DeviceClassList, DeviceClassPublic
from fleet.api.routes import API_PREFIX
from fleet.api.strict_json import StrictJsonRoute
from fleet.services import queries
from fleet.services.catalog import create_device_class

__all__ = ["router"]

router = APIRouter(
    prefix=f"{API_PREFIX}/device-classes", tags=["device classes"], route_class=StrictJsonRoute
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 413, 422),
)
def create(body: DeviceClassCreate, context: ContextDep, caller: OperatorDep) -> DeviceClassPublic:
    """Register a hardware class; refused with 409 if the name is taken."""
    created = create_device_class(
        context.new_uow(), body.to_record(), actor=caller.name, now=context.clock()
    )
    return DeviceClassPublic.from_record(created)


@router.get("", responses=problem_responses(401))
def list_all(context: ContextDep, _: ViewerDep) -> DeviceClassList:
    classes = queries.list_device_classes(context.new_uow())
    return DeviceClassList(items=[DeviceClassPublic.from_record(c) for c in classes])


@router.get("/{name}", responses=problem_responses(401, 404, 422))
def get_one(name: Name, context: ContextDep, _: ViewerDep) -> DeviceClassPublic:
    return DeviceClassPublic.from_record(queries.get_device_class(context.new_uow(), name))
