"""Revoking and decommissioning a device through the API: a revoked device leaves its
rollout, gets no release, its signed status is refused; a decommissioned one loses its
key, tags and calibration and keeps its history; both are audited (the broker side is
in tests/e2e/test_broker_accounts.py, against a real Mosquitto)."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime

from fleet.domain.records import Role
from fleet.services.status import IncomingMessage, ingest_status_batch
from schemas import DeviceState, StatusReport
from signer.keys import SigningKey
from signer.signing import sign_model
from tests.api.support import API, Fleet, problem_of
from tests.signer.simulator import DEVICE_CLASS


async def _enroll_with_key(fleet: Fleet, device_id: str) -> SigningKey:
    key = SigningKey.generate()
    entry = {"id": device_id, "device_class": DEVICE_CLASS, "public_key": key.public.public}
    response = await fleet.client.post(
        f"{API}/devices", json=entry, headers=fleet.auth(Role.OPERATOR)
    )
    assert response.status_code == 201, response.text
    assert response.json()["broker_login"] is None  # this server does not manage them
    return key


def _status(device_id: str, key: SigningKey, counter: int) -> IncomingMessage:
    report = StatusReport(
        device_id=device_id, counter=counter, sent=datetime.now(UTC), state=DeviceState.IDLE
    )
    return IncomingMessage(device_id, sign_model(report, [key]).to_bytes(), datetime.now(UTC))


async def test_a_revoked_device_leaves_its_rollout_gets_nothing_and_is_not_heard(
    fleet: Fleet,
) -> None:
    await fleet.create_class()
    key = await _enroll_with_key(fleet, "dev-00001")
    await _enroll_with_key(fleet, "dev-00002")
    _, rolled = await fleet.released("1.0.0")
    _, hotfix = await fleet.released("1.0.1")
    created = await fleet.client.post(
        f"{API}/rollouts",
        json={
            "id": "r-kws",
            "release_digest": rolled,
            "plan": {"waves": [{"percent": 100}]},
            "target": {"device_class": DEVICE_CLASS},
        },
        headers=fleet.auth(Role.OPERATOR),
    )
    assert (created.status_code, created.json()["population"]) == (201, 2), created.text
    heard = ingest_status_batch(fleet.context.new_uow(), [_status("dev-00001", key, 1)])
    assert [o.accepted for o in heard] == [True]

    viewer = await fleet.client.post(
        f"{API}/devices/dev-00001/revoke", headers=fleet.auth(Role.VIEWER)
    )
    assert viewer.status_code == 403
    revoked = await fleet.client.post(
        f"{API}/devices/dev-00001/revoke", headers=fleet.auth(Role.OPERATOR)
    )
    assert revoked.status_code == 200, revoked.text
    revoked_at = revoked.json()["revoked_at"]
    assert revoked_at is not None
    again = await fleet.client.post(
        f"{API}/devices/dev-00001/revoke", headers=fleet.auth(Role.OPERATOR)
    )
    assert (again.status_code, again.json()["revoked_at"]) == (200, revoked_at)
    unknown = await fleet.client.post(
        f"{API}/devices/dev-09999/revoke", headers=fleet.auth(Role.OPERATOR)
    )
    assert (unknown.status_code, problem_of(unknown)["code"]) == (404, "not_found")

    refused = ingest_status_batch(fleet.context.new_uow(), [_status("dev-00001", key, 2)])
    assert [(o.accepted, o.reason) for o in refused] == [(False, "revoked")]

    assign = await fleet.client.post(
        f"{API}/releases/{hotfix}/assign",
        json={"device_ids": ["dev-00001"]},
        headers=fleet.auth(Role.OPERATOR),
    )
    assert (assign.status_code, problem_of(assign)["code"]) == (409, "device_revoked")
    # It left r-kws: the rollout no longer holds it, and a new rollout never targets it.
    with fleet.context.new_uow() as uow:
        assert uow.rollouts.claims(["dev-00001", "dev-00002"]) == {"dev-00002": "r-kws"}
    aborted = await fleet.client.post(
        f"{API}/rollouts/r-kws/abort", headers=fleet.auth(Role.OPERATOR)
    )
    assert aborted.status_code == 200, aborted.text
    fresh = await fleet.client.post(
        f"{API}/rollouts",
        json={
            "id": "r-kws-2",
            "release_digest": hotfix,
            "plan": {"waves": [{"percent": 100}]},
            "target": {"device_class": DEVICE_CLASS},
        },
        headers=fleet.auth(Role.OPERATOR),
    )
    assert (fresh.status_code, fresh.json()["population"]) == (201, 1), fresh.text

    audit = await fleet.client.get(f"{API}/audit", headers=fleet.auth(Role.VIEWER))
    revocations = [e for e in audit.json()["items"] if e["action"] == "device.revoke"]
    assert [(e["subject"], e["detail"]["rollout"]) for e in revocations] == [("dev-00001", "r-kws")]


async def test_broker_logins_are_refused_when_the_server_does_not_manage_them(
    fleet: Fleet,
) -> None:
    await fleet.create_class()
    bulk = await fleet.enroll("dev-00001")
    assert bulk.json()["broker_logins"] == []
    response = await fleet.client.post(
        f"{API}/devices/dev-00001/broker-login", headers=fleet.auth(Role.OPERATOR)
    )
    assert (response.status_code, problem_of(response)["code"]) == (
        409,
        "broker_logins_unmanaged",
    )


async def test_decommissioning_deletes_the_devices_secrets_and_keeps_its_history(
    fleet: Fleet,
) -> None:
    await fleet.create_class()
    key = await _enroll_with_key(fleet, "dev-00001")
    tagged = await fleet.client.put(
        f"{API}/devices/dev-00001/tags",
        json={"tags": ["site:lab"]},
        headers=fleet.auth(Role.OPERATOR),
    )
    assert tagged.status_code == 200
    calibration = os.urandom(300)
    stored = await fleet.client.post(
        f"{API}/devices/dev-00001/calibration",
        content=calibration,
        headers={**fleet.auth(Role.OPERATOR), "Content-Type": "application/octet-stream"},
    )
    assert stored.status_code == 201, stored.text
    sha256 = hashlib.sha256(calibration).hexdigest()
    assert fleet.context.blobs.exists(sha256)
    ingest_status_batch(fleet.context.new_uow(), [_status("dev-00001", key, 1)])

    retired = await fleet.client.post(
        f"{API}/devices/dev-00001/decommission", headers=fleet.auth(Role.OPERATOR)
    )
    assert retired.status_code == 200, retired.text
    body = retired.json()
    assert body["decommissioned_at"] is not None and body["revoked_at"] is not None
    assert (body["tags"], body["public_key"]) == ([], "0" * 64)
    assert not fleet.context.blobs.exists(sha256)
    gone = await fleet.client.get(
        f"{API}/devices/dev-00001/calibration", headers=fleet.auth(Role.VIEWER)
    )
    assert gone.status_code == 404
    history = await fleet.client.get(
        f"{API}/devices/dev-00001/history", headers=fleet.auth(Role.VIEWER)
    )
    assert [e["counter"] for e in history.json()] == [1]
    again = await fleet.client.post(
        f"{API}/devices/dev-00001/decommission", headers=fleet.auth(Role.OPERATOR)
    )
    assert again.json()["decommissioned_at"] == body["decommissioned_at"]

    audit = await fleet.client.get(f"{API}/audit", headers=fleet.auth(Role.VIEWER))
    (event,) = [e for e in audit.json()["items"] if e["action"] == "device.decommission"]
    assert event["detail"]["keyid"] == key.keyid
    assert (event["detail"]["tags"], event["detail"]["calibrations_deleted"]) == (["site:lab"], 1)
    assert [e["subject"] for e in audit.json()["items"] if e["action"] == "device.revoke"] == [
        "dev-00001"
    ]
