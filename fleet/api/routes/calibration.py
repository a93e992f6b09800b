"""Per-device calibration: a raw blob, versioned per device, delivered with a release."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request, status

from fleet.api.bodies import stream_into
from fleet.api.deps import ContextDep, OperatorDep, ViewerDep
from fleet.api.models.common import DeviceId, problem_responses
from fleet.api.models.devices import CalibrationPublic
from fleet.api.routes import API_PREFIX
from fleet.api.strict_json import StrictJsonRoute
from fleet.services import queries
from fleet.services.artifacts import store_calibration

__all__ = ["MAX_CALIBRATION_BYTES", "router"]

router = APIRouter(
    prefix=f"{API_PREFIX}/devices", tags=["calibration"], route_class=StrictJsonRoute
)

# A director manifest declares a calibration of at most 1 MiB (schemas.Calibration).
MAX_CALIBRATION_BYTES = 1024 * 1024
_RAW_BODY = {
    "requestBody": {
        "required": True,
        "description": f"the calibration bytes, at most {MAX_CALIBRATION_BYTES} bytes",
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "minLength": 1}
            }
        },
    }
}


@router.post(
    "/{device_id}/calibration",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_RAW_BODY,
    responses=problem_responses(400, 401, 403, 404, 413, 422),
)
async def upload(
    device_id: DeviceId, request: Request, context: ContextDep, caller: OperatorDep
) -> CalibrationPublic:
    """Store a new calibration version for the device; the next assignment carries it."""
    store = partial(
        store_calibration,
        context.new_uow(),
        context.blobs,
        device_id,
        max_length=MAX_CALIBRATION_BYTES,
        actor=caller.name,
        now=context.clock(),
    )
    calibration = await stream_into(
        request, store, max_length=MAX_CALIBRATION_BYTES, too_large="artifact_too_large"
    )
    return CalibrationPublic.from_record(calibration)


@router.get("/{device_id}/calibration", responses=problem_responses(401, 404, 422))
def latest(device_id: DeviceId, context: ContextDep, _: ViewerDep) -> CalibrationPublic:
    """The device's latest calibration version."""
    return CalibrationPublic.from_record(queries.latest_calibration(context.new_uow(), device_id))
