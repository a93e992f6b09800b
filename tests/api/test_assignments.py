"""Assigning releases to devices, and the per-device calibration they carry."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from fleet.api.routes.calibration import MAX_CALIBRATION_BYTES
from fleet.domain.records import Role
from schemas import DirectorManifest, Envelope, ReleaseManifest, decode_payload
from tests.api.support import API, DEVICE_CLASS, Fleet, device_entry, problem_of

CALIBRATION = b'{"gain": 1.02, "offset": -3}'


async def _assign(fleet: Fleet, digest: str, *device_ids: str) -> httpx.Response:
    return await fleet.client.post(
        f"{API}/releases/{digest}/assign",
        json={"device_ids": list(device_ids)},
        headers=fleet.auth(Role.OPERATOR),
    )


async def _calibrate(fleet: Fleet, device_id: str, data: bytes) -> httpx.Response:
    headers = {**fleet.auth(Role.OPERATOR), "Content-Type": "application/octet-stream"}
    return await fleet.client.post(
        f"{API}/devices/{device_id}/calibration", content=data, headers=headers
    )


async def _direction(fleet: Fleet, device_id: str) -> dict[str, Any]:
    response = await fleet.client.get(
        f"{API}/devices/{device_id}/director", headers=fleet.auth(Role.VIEWER)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_each_assignment_gets_the_next_sequence(fleet: Fleet) -> None:
    await fleet.create_class()
    await fleet.enroll("dev-00001", "dev-00002")
    _, first = await fleet.released("1.0.0")
    _, second = await fleet.released("1.1.0")
    assert (await _assign(fleet, first, "dev-00001", "dev-00002")).status_code == 200
    response = await _assign(fleet, second, "dev-00001", "dev-00001")
    assert response.json() == {
        "release_digest": second,
        "count": 1,
        "assignments": [{"device_id": "dev-00001", "sequence": 2}],
    }
    latest = await _direction(fleet, "dev-00001")
    assert (latest["sequence"], latest["release_digest"], latest["action"]) == (
        2,
        second,
        "install",
    )
    assert (await _direction(fleet, "dev-00002"))["sequence"] == 1
    assert fleet.queued == [1, 1]


async def test_an_assignment_is_all_or_nothing(fleet: Fleet) -> None:
    await fleet.create_class()
    await fleet.create_class("esp32-s3")
    await fleet.enroll("dev-00001")
    other = device_entry("dev-00002") | {"device_class": "esp32-s3"}
    await fleet.client.post(f"{API}/devices", json=other, headers=fleet.auth(Role.OPERATOR))
    _, digest = await fleet.released()

    unknown_device = await _assign(fleet, digest, "dev-00001", "dev-09999")
    assert (unknown_device.status_code, problem_of(unknown_device)["code"]) == (404, "not_found")
    mismatch = await _assign(fleet, digest, "dev-00001", "dev-00002")
    assert (mismatch.status_code, problem_of(mismatch)["code"]) == (422, "device_class_mismatch")
    unknown_release = await _assign(fleet, "0" * 64, "dev-00001")
    assert (unknown_release.status_code, problem_of(unknown_release)["code"]) == (404, "not_found")
    empty = await _assign(fleet, digest)
    assert (empty.status_code, problem_of(empty)["code"]) == (422, "validation_failed")

    nothing = await fleet.client.get(
        f"{API}/devices/dev-00001/director", headers=fleet.auth(Role.VIEWER)
    )
    assert nothing.status_code == 404
    assert fleet.queued == []


async def test_the_latest_calibration_travels_with_the_next_assignment(fleet: Fleet) -> None:
    await fleet.create_class()
    await fleet.enroll("dev-00001")
    first = await _calibrate(fleet, "dev-00001", b"v1")
    assert (first.status_code, first.json()["version"]) == (201, 1)
    second = await _calibrate(fleet, "dev-00001", CALIBRATION)
    assert second.json() == {
        "device_id": "dev-00001",
        "version": 2,
        "sha256": hashlib.sha256(CALIBRATION).hexdigest(),
        "length": len(CALIBRATION),
    }
    latest = await fleet.client.get(
        f"{API}/devices/dev-00001/calibration", headers=fleet.auth(Role.VIEWER)
    )
    assert latest.json() == second.json()

    _, digest = await fleet.released()
    await _assign(fleet, digest, "dev-00001")
    envelope = Envelope.model_validate((await _direction(fleet, "dev-00001"))["envelope"])
    calibration = decode_payload(envelope, DirectorManifest).calibration
    assert calibration is not None
    assert (calibration.version, calibration.sha256) == (2, second.json()["sha256"])
    download = await fleet.client.get(f"{API}/artifacts/{calibration.sha256}")
    assert download.content == CALIBRATION


async def test_calibration_is_refused_when_empty_huge_or_for_nobody(fleet: Fleet) -> None:
    await fleet.create_class()
    await fleet.enroll("dev-00001")
    empty = await _calibrate(fleet, "dev-00001", b"")
    assert (empty.status_code, problem_of(empty)["code"]) == (422, "empty_body")
    huge = await _calibrate(fleet, "dev-00001", b"x" * (MAX_CALIBRATION_BYTES + 1))
    assert (huge.status_code, problem_of(huge)["code"]) == (413, "artifact_too_large")
    nobody = await _calibrate(fleet, "dev-09999", CALIBRATION)
    assert (nobody.status_code, problem_of(nobody)["code"]) == (404, "not_found")
    none_yet = await fleet.client.get(
        f"{API}/devices/dev-00001/calibration", headers=fleet.auth(Role.VIEWER)
    )
    assert none_yet.status_code == 404


async def test_a_device_in_a_running_rollout_is_not_assigned_around_it(fleet: Fleet) -> None:
    await fleet.create_class()
    await fleet.enroll("dev-00001", "dev-00002")
    _, rolled = await fleet.released("1.0.0")
    _, hotfix = await fleet.released("1.0.1")
    rollout = await fleet.client.post(
        f"{API}/rollouts",
        json={
            "id": "r-kws",
            "release_digest": rolled,
            "plan": {"waves": [{"percent": 100}]},
            "target": {"device_class": DEVICE_CLASS},
        },
        headers=fleet.auth(Role.OPERATOR),
    )
    assert rollout.status_code == 201, rollout.text

    refused = await _assign(fleet, hotfix, "dev-00001")
    problem = problem_of(refused)
    assert (refused.status_code, problem["code"]) == (409, "device_in_rollout")
    assert problem["rollouts"] == {"dev-00001": "r-kws"}
    assert "r-kws" in problem["detail"]

    detached = await fleet.client.post(
        f"{API}/releases/{hotfix}/assign",
        json={"device_ids": ["dev-00001"], "detach_from_rollouts": True},
        headers=fleet.auth(Role.OPERATOR),
    )
    assert detached.status_code == 200, detached.text
    assert (await _direction(fleet, "dev-00001"))["release_digest"] == hotfix
    audit = await fleet.client.get(f"{API}/audit", headers=fleet.auth(Role.VIEWER))
    assert any(
        e["action"] == "rollout.detach" and e["detail"]["device"] == "dev-00001"
        for e in audit.json()["items"]
    )
    # The rollout no longer counts or rolls back the device it gave up.
    again = await _assign(fleet, hotfix, "dev-00001")
    assert again.status_code == 200
    still_held = await _assign(fleet, hotfix, "dev-00002")
    assert still_held.status_code == 409


async def test_a_release_whose_signing_key_was_revoked_since_is_not_sent(fleet: Fleet) -> None:
    """Registration verified it; a later root revoked one of its two signers. Devices
    would refuse it, so neither an assignment nor a rollout may send it."""
    await fleet.create_class()
    assert (await fleet.enroll("dev-00001")).status_code == 201
    _, revoked = await fleet.released("1.0.0")  # signed by release-1 and release-2
    later = fleet.sim.sign_release(fleet.sim.release("1.0.1"), ["release-2", "release-3"])
    await fleet.upload_components(decode_payload(later, ReleaseManifest))
    registered = await fleet.register(later)
    assert registered.status_code == 201, registered.text
    fleet.sim.rotate_root(release=["release-2", "release-3", "release-4"])

    refused = await _assign(fleet, revoked, "dev-00001")
    assert refused.status_code == 409, refused.text
    problem = problem_of(refused)
    assert problem["code"] == "release_untrusted"
    assert "no longer verifies under root v2" in problem["detail"]
    rollout = await fleet.client.post(
        f"{API}/rollouts",
        json={
            "release_digest": revoked,
            "plan": {"waves": [{"percent": 100}]},
            "target": {"device_class": DEVICE_CLASS},
        },
        headers=fleet.auth(Role.OPERATOR),
    )
    assert (rollout.status_code, problem_of(rollout)["code"]) == (409, "release_untrusted")
    undirected = await fleet.client.get(
        f"{API}/devices/dev-00001/director", headers=fleet.auth(Role.VIEWER)
    )
    assert undirected.status_code == 404, undirected.text  # nothing was signed for it
    # The positive control: a release its current keys vouch for is sent.
    assert (await _assign(fleet, registered.json()["digest"], "dev-00001")).status_code == 200
