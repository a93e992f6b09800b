"""A release's signed ``Constraints`` on the server: at registration against the device
class, at assignment and rollout creation against each device's reported firmware.

The releases are really signed (2-of-3 release keys); the firmware a device runs is
what its last status report said, written the way status ingest writes it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fleet.domain.records import InstalledComponent, Role
from schemas import Constraints, DeviceState, FirmwareDeclaration, ReleaseManifest
from schemas import Role as KeyRole
from signer.signing import sign_envelope
from tests.api.support import API, DEVICE_CLASS, Fleet, problem_of
from tests.signer.simulator import tamper

CLASS_RAM, CLASS_FLASH = 262_144, 1_048_576  # Fleet.create_class
BACKENDS = pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)


def constrained(fleet: Fleet, version: str = "2.0.0", **constraints: Any) -> ReleaseManifest:
    manifest = fleet.sim.release(version)
    return manifest.model_copy(update={"constraints": Constraints.model_validate(constraints)})


async def register(fleet: Fleet, manifest: ReleaseManifest) -> httpx.Response:
    await fleet.upload_components(manifest)
    return await fleet.register(fleet.sim.sign_release(manifest))


async def registered(fleet: Fleet, manifest: ReleaseManifest) -> str:
    response = await register(fleet, manifest)
    assert response.status_code == 201, response.text
    digest: str = response.json()["digest"]
    return digest


def violations(response: httpx.Response) -> list[str]:
    problem = problem_of(response)
    assert (response.status_code, problem["code"]) == (422, "release_incompatible")
    return [v["code"] for v in problem["violations"]]


def runs_firmware(fleet: Fleet, device_id: str, version: str) -> None:
    uow = fleet.context.new_uow()
    with uow:
        uow.devices.update_reported(
            device_id,
            counter=1,
            seen_at=fleet.sim.now,
            state=DeviceState.HEALTHY,
            running_release_digest=None,
            components=[InstalledComponent("firmware", version, 1)],
        )
        uow.commit()


@BACKENDS
async def test_declared_ram_and_flash_above_the_class_are_refused_with_the_numbers(
    fleet: Fleet,
) -> None:
    await fleet.create_class()
    response = await register(
        fleet, constrained(fleet, ram_bytes=CLASS_RAM + 1, flash_bytes=CLASS_FLASH + 1)
    )
    assert violations(response) == ["declared_ram_exceeded", "declared_flash_exceeded"]
    detail = problem_of(response)["detail"]
    assert f"declares {CLASS_RAM + 1:,} B of RAM, device class {DEVICE_CLASS!r} has" in detail
    assert f"declares {CLASS_FLASH + 1:,} B of flash" in detail
    assert (await fleet.client.get(f"{API}/releases", headers=fleet.auth(Role.VIEWER))).json()[
        "items"
    ] == []
    # At the class's own figures the release fits.
    await registered(fleet, constrained(fleet, ram_bytes=CLASS_RAM, flash_bytes=CLASS_FLASH))


async def test_required_ops_the_class_or_the_firmware_lacks_are_refused(fleet: Fleet) -> None:
    body = {
        "name": DEVICE_CLASS,
        "ram_bytes": CLASS_RAM,
        "flash_bytes": CLASS_FLASH,
        "supported_ops": ["FULLY_CONNECTED", "SOFTMAX", "CONV_2D"],
    }
    created = await fleet.client.post(
        f"{API}/device-classes", json=body, headers=fleet.auth(Role.OPERATOR)
    )
    assert created.status_code == 201, created.text
    lstm = constrained(fleet, required_ops=["FULLY_CONNECTED", "LSTM"])
    response = await register(fleet, lstm)
    assert violations(response) == ["required_ops_unavailable"]
    assert f"device class {DEVICE_CLASS!r} lacks: LSTM" in problem_of(response)["detail"]

    manifest = constrained(fleet, required_ops=["CONV_2D"])
    declared = FirmwareDeclaration(builtin_ops=("FULLY_CONNECTED", "SOFTMAX"), ram_bytes=1024)
    components = tuple(
        c.model_copy(update={"firmware": declared}) if c.kind.value == "firmware" else c
        for c in manifest.components
    )
    response = await register(fleet, manifest.model_copy(update={"components": components}))
    assert violations(response) == ["required_ops_unavailable"]
    assert "firmware 2.0.0's resolver lacks: CONV_2D" in problem_of(response)["detail"]


async def test_a_release_shipping_firmware_below_its_own_minimum_is_refused(
    fleet: Fleet,
) -> None:
    await fleet.create_class()
    response = await register(fleet, constrained(fleet, "2.0.0", min_firmware_version="2.1.0"))
    assert violations(response) == ["firmware_below_minimum"]
    assert (
        "ships firmware 2.0.0, below its own min_firmware_version 2.1.0"
        in (problem_of(response)["detail"])
    )


async def test_a_minimum_firmware_that_is_not_semver_is_refused(fleet: Fleet) -> None:
    await fleet.create_class()
    manifest = fleet.sim.release("2.0.0")
    await fleet.upload_components(manifest)

    def loose(payload: dict[str, Any]) -> None:
        payload["constraints"]["min_firmware_version"] = "v2"

    # Signed again over the edited payload: the signatures hold, the field is refused.
    edited = tamper(fleet.sim.sign_release(manifest), loose)
    release_keys = [fleet.sim.keys(name) for name in fleet.sim.role_keys[KeyRole.RELEASE]]
    response = await fleet.register(sign_envelope(edited, release_keys))
    problem = problem_of(response)
    assert (response.status_code, problem["code"]) == (422, "malformed")
    assert "min_firmware_version" in problem["detail"]


@BACKENDS
async def test_assignment_refuses_devices_below_the_minimum_firmware_naming_each(
    fleet: Fleet,
) -> None:
    await fleet.create_class()
    await fleet.enroll("dev-00001", "dev-00002", "dev-00003")
    runs_firmware(fleet, "dev-00001", "2.1.0")
    runs_firmware(fleet, "dev-00002", "2.1.0-rc.1")  # a pre-release is below its release
    digest = await registered(fleet, constrained(fleet, "2.1.0", min_firmware_version="2.1.0"))

    response = await fleet.client.post(
        f"{API}/releases/{digest}/assign",
        json={"device_ids": ["dev-00001", "dev-00002", "dev-00003"]},
        headers=fleet.auth(Role.OPERATOR),
    )
    problem = problem_of(response)
    assert (response.status_code, problem["code"]) == (409, "firmware_too_old")
    assert problem["min_firmware_version"] == "2.1.0"
    assert problem["refused"] == {
        "dev-00002": {"firmware_version": "2.1.0-rc.1"},
        "dev-00003": {"firmware_version": None},
    }
    assert "dev-00003 (never reported)" in problem["detail"]
    director = await fleet.client.get(
        f"{API}/devices/dev-00001/director", headers=fleet.auth(Role.VIEWER)
    )
    assert director.status_code == 404  # all or nothing: not even the device that qualifies

    allowed = await fleet.client.post(
        f"{API}/releases/{digest}/assign",
        json={"device_ids": ["dev-00001"]},
        headers=fleet.auth(Role.OPERATOR),
    )
    assert allowed.status_code == 200, allowed.text


@BACKENDS
async def test_a_rollout_leaves_out_devices_below_the_minimum_and_says_which(
    fleet: Fleet,
) -> None:
    await fleet.create_class()
    await fleet.enroll("dev-00001", "dev-00002", "dev-00003", "dev-00004")
    for device_id in ("dev-00001", "dev-00004"):
        runs_firmware(fleet, device_id, "3.0.0")
    runs_firmware(fleet, "dev-00002", "1.9.9")
    digest = await registered(fleet, constrained(fleet, min_firmware_version="2.0.0"))
    other = await registered(fleet, constrained(fleet, "2.0.1"))

    def rollout(rollout_id: str, release: str, **target: Any) -> dict[str, Any]:
        return {
            "id": rollout_id,
            "release_digest": release,
            "plan": {"waves": [{"percent": 100}]},
            "target": {"device_class": DEVICE_CLASS, **target},
        }

    held = await fleet.client.post(
        f"{API}/rollouts", json=rollout("r-other", other), headers=fleet.auth(Role.OPERATOR)
    )
    assert held.status_code == 201, held.text
    assert held.json()["left_out"] == {}
    await fleet.client.post(
        f"{API}/releases/{other}/assign",
        json={"device_ids": ["dev-00004"], "detach_from_rollouts": True},
        headers=fleet.auth(Role.OPERATOR),
    )
    # r-other still holds dev-00001..3: dev-00001 is left out for that, dev-00002 and
    # dev-00003 for their firmware (checked first), and dev-00004 is the population.
    response = await fleet.client.post(
        f"{API}/rollouts", json=rollout("r-kws", digest), headers=fleet.auth(Role.OPERATOR)
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["population"] == 1  # dev-00004: free and on firmware 3.0.0
    assert created["left_out"] == {
        "firmware_too_old": {"dev-00002": "1.9.9", "dev-00003": None},
        "in_other_rollout": {"dev-00001": "r-other"},
    }
    detail = await fleet.client.get(f"{API}/rollouts/r-kws", headers=fleet.auth(Role.VIEWER))
    created_event = detail.json()["events"][0]
    assert created_event["detail"]["left_out"] == {"firmware_too_old": 2, "in_other_rollout": 1}
