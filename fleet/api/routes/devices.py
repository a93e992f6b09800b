"""Devices: enrollment, lookup, tags, and what the server knows and decided for each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, status

from fleet.api.deps import ContextDep, OperatorDep, ViewerDep
from fleet.api.models.common import (
    MAX_BULK_DEVICES,
    DeviceId,
    Digest,
    Name,
    PageLimit,
    Tag,
    problem_responses,
)
from fleet.api.models.devices import (
    BrokerLoginPublic,
    DeviceCreate,
    DeviceEnrolled,
    DeviceList,
    DevicePublic,
    DeviceTags,
    DirectionPublic,
    EnrollmentResult,
    ProvisionCreate,
    StatusEventPublic,
)
from fleet.api.models.telemetry import DevicePrivacyPublic
from fleet.api.problems import ProblemError
from fleet.api.routes import API_PREFIX
from fleet.api.routes.calibration import MAX_CALIBRATION_BYTES
from fleet.api.strict_json import StrictJsonRoute
from fleet.services import queries
from fleet.services.broker_accounts import issue_broker_login
from fleet.services.catalog import enroll_devices, set_device_tags
from fleet.services.coap_keys import issue_coap_keys
from fleet.services.lifecycle import decommission_device, revoke_device
from fleet.services.privacy_accounting import device_privacy
from fleet.services.provisioning import DeviceEndpoints, provision_device
from schemas.oscore import OscoreKeys
from schemas.provisioning import ProvisioningBundle

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/devices", tags=["devices"], route_class=StrictJsonRoute)

DeviceBatch = Annotated[
    list[DeviceCreate],
    Body(
        min_length=1,
        max_length=MAX_BULK_DEVICES,
        description="the devices.json `fleet-sim keys` writes; all are enrolled or none",
    ),
]
_WRITE_PROBLEMS = problem_responses(401, 403, 404, 409, 413, 422)


@router.post("", status_code=status.HTTP_201_CREATED, responses=_WRITE_PROBLEMS)
def enroll(body: DeviceCreate, context: ContextDep, caller: OperatorDep) -> DeviceEnrolled:
    """Enroll one device; its class must exist and its id and key must be new. When the
    server manages broker logins, the answer carries the device's, shown only here."""
    enrolled = enroll_devices(
        context.new_uow(),
        [body.to_enrollment()],
        actor=caller.name,
        now=context.clock(),
        broker_logins=context.broker_logins,
    )
    context.on_broker_accounts_queued()
    (device,) = enrolled.devices
    login = next(iter(enrolled.broker_logins), None)
    return DeviceEnrolled(
        **DevicePublic.from_record(device).model_dump(),
        broker_login=None if login is None else BrokerLoginPublic.from_login(login),
    )


@router.post("/bulk", status_code=status.HTTP_201_CREATED, responses=_WRITE_PROBLEMS)
def enroll_bulk(body: DeviceBatch, context: ContextDep, caller: OperatorDep) -> EnrollmentResult:
    """Enroll up to 10,000 devices at once; one bad entry refuses the whole batch. When
    the server manages broker logins, the answer carries each device's, shown only here."""
    enrolled = enroll_devices(
        context.new_uow(),
        [entry.to_enrollment() for entry in body],
        actor=caller.name,
        now=context.clock(),
        broker_logins=context.broker_logins,
    )
    context.on_broker_accounts_queued()
    return EnrollmentResult(
        enrolled=len(enrolled.devices),
        ids=[d.id for d in enrolled.devices],
        broker_logins=[BrokerLoginPublic.from_login(x) for x in enrolled.broker_logins],
    )


@router.post(
    "/{device_id}/provision",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)
def provision(
    device_id: DeviceId,
    body: ProvisionCreate,
    request: Request,
    context: ContextDep,
    caller: OperatorDep,
) -> ProvisioningBundle:
    """Enroll one device and answer with its provisioning bundle for the factory line:
    its keypair (made here unless `public_key` is given), its broker login, the root to
    pin, the server's and broker's URLs and its initial calibration. The private key and
    the password are in this answer only. 409 `provisioning_unconfigured` when the
    server does not know the broker's device URL (FLEET_PUBLIC_MQTT_URL)."""
    if context.device_mqtt_url is None or context.pinned_root is None:
        raise ProblemError(
            "set FLEET_PUBLIC_MQTT_URL to the broker's device listener first",
            status=409,
            code="provisioning_unconfigured",
        )
    http_base = context.device_http_base or f"{str(request.base_url).rstrip('/')}{API_PREFIX}"
    bundle = provision_device(
        context.new_uow(),
        context.blobs,
        body.to_request(device_id),
        DeviceEndpoints(context.device_mqtt_url, http_base, context.pinned_root()),
        broker_logins=context.broker_logins,
        max_calibration_bytes=MAX_CALIBRATION_BYTES,
        actor=caller.name,
        now=context.clock(),
    )
    context.on_broker_accounts_queued()
    return bundle


@router.post("/{device_id}/revoke", responses=problem_responses(401, 403, 404, 422))
def revoke(device_id: DeviceId, context: ContextDep, caller: OperatorDep) -> DevicePublic:
    """Cut a device off: its broker login disabled (the broker disconnects it at once),
    its signed status and telemetry refused, and it leaves any active rollout. Audited;
    revoking again changes nothing. There is no un-revoke: enroll it under a new id."""
    device = revoke_device(
        context.new_uow(),
        device_id,
        manage_logins=context.broker_logins,
        actor=caller.name,
        now=context.clock(),
    )
    context.on_broker_accounts_queued()
    return DevicePublic.from_record(device)


@router.post("/{device_id}/decommission", responses=problem_responses(401, 403, 404, 422))
def decommission(device_id: DeviceId, context: ContextDep, caller: OperatorDep) -> DevicePublic:
    """Retire a device for good: revoked (if it was not), its broker login deleted, its
    key, tags and calibrations deleted; its status history and an audit event recording
    what it was are kept. Decommissioning again changes nothing."""
    device = decommission_device(
        context.new_uow(),
        context.blobs,
        device_id,
        manage_logins=context.broker_logins,
        actor=caller.name,
        now=context.clock(),
    )
    context.on_broker_accounts_queued()
    return DevicePublic.from_record(device)


@router.post("/{device_id}/broker-login", responses=problem_responses(401, 403, 404, 409, 422))
def new_broker_login(
    device_id: DeviceId, context: ContextDep, caller: OperatorDep
) -> BrokerLoginPublic:
    """A new broker password for the device (the old one stops working once the broker
    has the new one), shown only here. 409 `device_revoked` for a revoked device, 409
    `broker_logins_unmanaged` when the server does not manage broker logins."""
    if not context.broker_logins:
        raise ProblemError(
            "this server does not manage broker logins (FLEET_BROKER_ACCOUNTS=none)",
            status=409,
            code="broker_logins_unmanaged",
        )
    login = issue_broker_login(context.new_uow(), device_id, actor=caller.name, now=context.clock())
    context.on_broker_accounts_queued()
    return BrokerLoginPublic.from_login(login)


@router.post("/{device_id}/coap-keys", responses=problem_responses(401, 403, 404, 409, 422))
def new_coap_keys(device_id: DeviceId, context: ContextDep, caller: OperatorDep) -> OscoreKeys:
    """New OSCORE keys for the device's CoAP requests, shown only here (a provisioning
    bundle carries the first); the old ones stop working within 5 s, when each replica
    asks the database again. 409 `device_revoked` for a revoked device. Audited without
    the secret."""
    return issue_coap_keys(context.new_uow(), device_id, actor=caller.name, now=context.clock())


@router.get("", responses=problem_responses(401, 422))
def find(
    context: ContextDep,
    _: ViewerDep,
    device_class: Name | None = None,
    tag: Annotated[list[Tag] | None, Query(max_length=32, description="repeatable")] = None,
    release: Annotated[Digest | None, Query(description="running release digest")] = None,
    after: Annotated[DeviceId | None, Query(description="the previous page's next_after")] = None,
    limit: PageLimit = 100,
) -> DeviceList:
    """Devices matching every filter given, ordered by id; page with `after`."""
    devices = queries.find_devices(
        context.new_uow(),
        device_class=device_class,
        tags=tag or (),
        release=release,
        after=after,
        limit=limit + 1,
    )
    page = devices[:limit]
    more = len(devices) > limit
    return DeviceList(
        items=[DevicePublic.from_record(d) for d in page],
        next_after=page[-1].id if more else None,
    )


@router.get("/{device_id}", responses=problem_responses(401, 404, 422))
def get_one(device_id: DeviceId, context: ContextDep, _: ViewerDep) -> DevicePublic:
    """Reported state, running release and components, presence, director sequence."""
    return DevicePublic.from_record(queries.get_device(context.new_uow(), device_id))


@router.get("/{device_id}/privacy", responses=problem_responses(401, 404, 422))
def privacy(device_id: DeviceId, context: ContextDep, _: ViewerDep) -> DevicePrivacyPublic:
    """Telemetry privacy of one device: epsilon per day it can spend on the release it
    runs, at most the budget it enforces (an upper bound; the server keeps no record of
    which devices reported). 404 for an unknown device, or a release without thresholds."""
    return DevicePrivacyPublic.from_privacy(
        device_privacy(context.new_uow(), context.blobs, device_id)
    )


@router.put("/{device_id}/tags", responses=_WRITE_PROBLEMS)
def replace_tags(
    device_id: DeviceId, body: DeviceTags, context: ContextDep, caller: OperatorDep
) -> DevicePublic:
    """Replace the device's tags with exactly these."""
    device = set_device_tags(
        context.new_uow(), device_id, body.tags, actor=caller.name, now=context.clock()
    )
    return DevicePublic.from_record(device)


@router.get("/{device_id}/history", responses=problem_responses(401, 404, 422))
def history(
    device_id: DeviceId, context: ContextDep, _: ViewerDep, limit: PageLimit = 100
) -> list[StatusEventPublic]:
    """Status events the device reported, newest first."""
    events = queries.device_history(context.new_uow(), device_id, limit=limit)
    return [StatusEventPublic.from_record(e) for e in events]


@router.get("/{device_id}/director", responses=problem_responses(401, 404, 422))
def director(device_id: DeviceId, context: ContextDep, _: ViewerDep) -> DirectionPublic:
    """The latest signed director manifest for the device, and whether it was published."""
    return DirectionPublic.from_record(queries.latest_direction(context.new_uow(), device_id))
