"""Enrollment, finding devices, tags, and what the server knows of each device."""

from __future__ import annotations

from datetime import timedelta

from fleet.domain.records import InstalledComponent, Role, StatusEvent
from schemas import DeviceState
from tests.api.support import API, Fleet, device_entry, problem_of
from tests.signer.simulator import DEVICE_CLASS, START


async def test_one_device_is_enrolled_and_shown(fleet: Fleet) -> None:
    await fleet.create_class()
    entry = device_entry("dev-00001", tags=("site:lab", "batch=7"))
    created = await fleet.client.post(
        f"{API}/devices", json=entry, headers=fleet.auth(Role.OPERATOR)
    )
    assert created.status_code == 201, created.text
    shown = await fleet.client.get(f"{API}/devices/dev-00001", headers=fleet.auth(Role.VIEWER))
    # The enrollment answer is the device plus its broker login (none: unmanaged here).
    assert created.json() == shown.json() | {"broker_login": None}
    assert shown.json() | {"keyid": None, "enrolled_at": None} == {
        "id": "dev-00001",
        "device_class": DEVICE_CLASS,
        "public_key": entry["public_key"],
        "keyid": None,
        "tags": ["batch=7", "site:lab"],
        "enrolled_at": None,
        "state": None,
        "running_release": None,
        "components": [],
        "online": False,
        "last_seen": None,
        "director_sequence": 0,
        "revoked_at": None,
        "decommissioned_at": None,
    }
    again = await fleet.client.post(f"{API}/devices", json=entry, headers=fleet.auth(Role.OPERATOR))
    assert (again.status_code, problem_of(again)["code"]) == (409, "conflict")


async def test_a_bulk_enrollment_is_all_or_nothing(fleet: Fleet) -> None:
    await fleet.create_class()
    await fleet.enroll("dev-00002")
    refused = await fleet.enroll("dev-00001", "dev-00002", "dev-00003")
    assert (refused.status_code, problem_of(refused)["code"]) == (409, "conflict")
    assert "dev-00002" in problem_of(refused)["detail"]
    repeated = await fleet.enroll("dev-00004", "dev-00004")
    assert (repeated.status_code, problem_of(repeated)["code"]) == (409, "repeated_in_batch")
    same_key = device_entry("dev-00002") | {"id": "dev-00006"}
    reused = await fleet.client.post(
        f"{API}/devices/bulk", json=[same_key], headers=fleet.auth(Role.OPERATOR)
    )
    assert (reused.status_code, problem_of(reused)["code"]) == (409, "conflict")
    twice = await fleet.client.post(
        f"{API}/devices/bulk",
        json=[device_entry("dev-00007"), device_entry("dev-00007") | {"id": "dev-00008"}],
        headers=fleet.auth(Role.OPERATOR),
    )
    assert (twice.status_code, problem_of(twice)["code"]) == (409, "repeated_in_batch")
    unknown_class = [device_entry("dev-00005") | {"device_class": "esp32"}]
    missing = await fleet.client.post(
        f"{API}/devices/bulk", json=unknown_class, headers=fleet.auth(Role.OPERATOR)
    )
    assert (missing.status_code, problem_of(missing)["code"]) == (404, "not_found")
    listed = await fleet.client.get(f"{API}/devices", headers=fleet.auth(Role.VIEWER))
    assert [d["id"] for d in listed.json()["items"]] == ["dev-00002"]


async def test_a_bulk_enrollment_is_capped_at_ten_thousand(fleet: Fleet) -> None:
    await fleet.create_class()
    body = [device_entry(f"dev-{i:05d}") for i in range(10_001)]
    response = await fleet.client.post(
        f"{API}/devices/bulk", json=body, headers=fleet.auth(Role.OPERATOR)
    )
    assert (response.status_code, problem_of(response)["code"]) == (422, "validation_failed")


async def test_devices_are_found_by_class_tags_and_release_a_page_at_a_time(fleet: Fleet) -> None:
    await fleet.create_class()
    await fleet.create_class("esp32-s3")
    await fleet.enroll(*(f"dev-{i:05d}" for i in range(1, 8)), tags=("site:lab",))
    await fleet.enroll("dev-00008", tags=("site:lab", "canary"))
    _, digest = await fleet.released()
    with fleet.context.new_uow() as uow:
        uow.devices.update_reported(
            "dev-00003",
            counter=0,
            seen_at=START,
            state=DeviceState.HEALTHY,
            running_release_digest=digest,
            components=[InstalledComponent("firmware", "1.0.0", 1)],
        )
        uow.commit()

    async def ids(**params: str | int | list[str]) -> tuple[list[str], str | None]:
        response = await fleet.client.get(
            f"{API}/devices", params=params, headers=fleet.auth(Role.VIEWER)
        )
        assert response.status_code == 200, response.text
        return [d["id"] for d in response.json()["items"]], response.json()["next_after"]

    assert await ids(tag=["site:lab", "canary"]) == (["dev-00008"], None)
    assert await ids(release=digest) == (["dev-00003"], None)
    assert await ids(device_class="esp32-s3") == ([], None)
    assert await ids(limit=3) == (["dev-00001", "dev-00002", "dev-00003"], "dev-00003")
    assert await ids(limit=3, after="dev-00003") == (
        ["dev-00004", "dev-00005", "dev-00006"],
        "dev-00006",
    )
    assert await ids(limit=3, after="dev-00006") == (["dev-00007", "dev-00008"], None)
    shown = await fleet.client.get(f"{API}/devices/dev-00003", headers=fleet.auth(Role.VIEWER))
    assert (shown.json()["state"], shown.json()["running_release"]) == ("healthy", digest)
    assert shown.json()["components"] == [
        {"kind": "firmware", "version": "1.0.0", "security_version": 1}
    ]


async def test_tags_are_replaced(fleet: Fleet) -> None:
    await fleet.create_class()
    await fleet.enroll("dev-00001", tags=("old",))
    response = await fleet.client.put(
        f"{API}/devices/dev-00001/tags",
        json={"tags": ["new", "site:lab"]},
        headers=fleet.auth(Role.OPERATOR),
    )
    assert (response.status_code, response.json()["tags"]) == (200, ["new", "site:lab"])
    # Tags are a set: a repeat is the same tag (schemathesis found it stored twice → 409).
    repeated = await fleet.client.put(
        f"{API}/devices/dev-00001/tags",
        json={"tags": ["new", "new", "site:lab", "new"]},
        headers=fleet.auth(Role.OPERATOR),
    )
    assert (repeated.status_code, repeated.json()["tags"]) == (200, ["new", "site:lab"])
    unknown = await fleet.client.put(
        f"{API}/devices/dev-09999/tags", json={"tags": []}, headers=fleet.auth(Role.OPERATOR)
    )
    assert (unknown.status_code, problem_of(unknown)["code"]) == (404, "not_found")


async def test_history_is_newest_first(fleet: Fleet) -> None:
    await fleet.create_class()
    await fleet.enroll("dev-00001")
    states = [DeviceState.NOTIFIED, DeviceState.DOWNLOADING, DeviceState.FAILED]
    with fleet.context.new_uow() as uow:
        for counter, state in enumerate(states):
            at = START + timedelta(seconds=counter)
            uow.status_events.append(StatusEvent("dev-00001", counter, state, at, error_code=None))
        uow.commit()
    viewer = fleet.auth(Role.VIEWER)
    history = await fleet.client.get(f"{API}/devices/dev-00001/history", headers=viewer)
    assert [e["state"] for e in history.json()] == ["failed", "downloading", "notified"]
    limited = await fleet.client.get(
        f"{API}/devices/dev-00001/history", params={"limit": 1}, headers=viewer
    )
    assert [e["counter"] for e in limited.json()] == [2]
    unknown = await fleet.client.get(f"{API}/devices/dev-09999/history", headers=viewer)
    assert unknown.status_code == 404


async def test_device_classes_are_created_once_and_listed(fleet: Fleet) -> None:
    assert (await fleet.create_class()).status_code == 201
    again = await fleet.create_class()
    assert (again.status_code, problem_of(again)["code"]) == (409, "conflict")
    viewer = fleet.auth(Role.VIEWER)
    listed = await fleet.client.get(f"{API}/device-classes", headers=viewer)
    assert [c["name"] for c in listed.json()["items"]] == [DEVICE_CLASS]
    shown = await fleet.client.get(f"{API}/device-classes/{DEVICE_CLASS}", headers=viewer)
    assert shown.json()["ram_bytes"] == 262_144
    missing = await fleet.client.get(f"{API}/device-classes/esp32", headers=viewer)
    assert missing.status_code == 404


async def test_the_servers_own_names_are_refused_as_device_ids(fleet: Fleet) -> None:
    """A device id is a broker username and client id: as `fleet-server` it would be
    handed the server's login, as a replica's client id take its session over."""
    await fleet.create_class()
    for batch in (["fleet-server"], ["dev-00001", "Fleet-1"], ["fleet-server-accounts"]):
        refused = await fleet.enroll(*batch)
        assert (refused.status_code, problem_of(refused)["code"]) == (422, "reserved_device_id")
    allowed = await fleet.enroll("fleetwide-1", "my-fleet-1")
    assert allowed.status_code == 201, allowed.text
    listed = await fleet.client.get(f"{API}/devices", headers=fleet.auth(Role.VIEWER))
    assert [d["id"] for d in listed.json()["items"]] == ["fleetwide-1", "my-fleet-1"]
