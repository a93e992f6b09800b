"""Release registration refuses a model its firmware or device class cannot run.

Real signed releases (2-of-3 release keys) whose firmware component declares its op
resolver and RAM; each refusal is 422 naming the numbers or operators, and leaves
nothing registered. A release that fits is registered and its model card is served.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from fleet.domain.records import Role
from fleet.inspection import inspect_model
from schemas import Component, ComponentKind, FirmwareDeclaration, ReleaseManifest
from schemas.release import TensorDeclaration
from tests.api.support import API, Fleet, problem_of
from tests.fleet.tflite_builder import build, tiny_classifier
from tests.signer.simulator import DEVICE_CLASS

CLASS_RAM = 262_144  # Fleet.create_class
RESOLVER = ("FULLY_CONNECTED", "SOFTMAX")
BACKENDS = pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
MODEL = build(tiny_classifier(), description="fit test")
CARD = inspect_model(MODEL)


def declaration(**changes: Any) -> FirmwareDeclaration:
    fields: dict[str, Any] = {"builtin_ops": RESOLVER, "ram_bytes": 48 * 1024, **changes}
    return FirmwareDeclaration(**fields)


def manifest_with(
    fleet: Fleet, firmware: FirmwareDeclaration | None, model: bytes = MODEL
) -> ReleaseManifest:
    """The simulator's release, with this model and firmware declaration."""
    manifest = fleet.sim.release("1.0.0")
    components: list[Component] = []
    for component in manifest.components:
        if component.kind is ComponentKind.FIRMWARE:
            component = component.model_copy(update={"firmware": firmware})
        elif component.kind is ComponentKind.MODEL:
            digest = fleet.sim.add_artifact(model)
            component = component.model_copy(update={"sha256": digest, "length": len(model)})
        components.append(component)
    return manifest.model_copy(update={"components": tuple(components)})


async def register(fleet: Fleet, manifest: ReleaseManifest) -> httpx.Response:
    await fleet.upload_components(manifest)
    return await fleet.register(fleet.sim.sign_release(manifest))


async def assert_refused(fleet: Fleet, response: httpx.Response, *codes: str) -> str:
    problem = problem_of(response)
    assert (response.status_code, problem["code"]) == (422, "release_incompatible")
    assert [v["code"] for v in problem["violations"]] == list(codes)
    listed = await fleet.client.get(f"{API}/releases", headers=fleet.auth(Role.VIEWER))
    assert listed.json()["items"] == []
    detail: str = problem["detail"]
    return detail


@BACKENDS
async def test_a_model_over_the_ram_budget_is_refused_naming_the_numbers(fleet: Fleet) -> None:
    await fleet.create_class()
    firmware_ram = CLASS_RAM - CARD.arena.total + 100
    manifest = manifest_with(fleet, declaration(ram_bytes=firmware_ram))
    detail = await assert_refused(fleet, await register(fleet, manifest), "ram_exceeded")
    assert f"tensor arena {CARD.arena.total:,} B" in detail
    assert f"firmware {firmware_ram:,} B = {CARD.arena.total + firmware_ram:,} B" in detail
    assert f"{DEVICE_CLASS!r}'s {CLASS_RAM:,} B by 100 B" in detail


async def test_a_model_needing_an_op_the_resolver_lacks_is_refused(fleet: Fleet) -> None:
    await fleet.create_class()
    manifest = manifest_with(fleet, declaration(builtin_ops=["FULLY_CONNECTED"]))
    detail = await assert_refused(fleet, await register(fleet, manifest), "missing_ops")
    assert "firmware 1.0.0's resolver lacks: SOFTMAX" in detail


async def test_an_op_the_device_class_does_not_support_is_refused(fleet: Fleet) -> None:
    body = {
        "name": DEVICE_CLASS,
        "ram_bytes": CLASS_RAM,
        "flash_bytes": 1 << 20,
        "supported_ops": ["FULLY_CONNECTED", "CONV_2D"],
    }
    created = await fleet.client.post(
        f"{API}/device-classes", json=body, headers=fleet.auth(Role.OPERATOR)
    )
    assert created.status_code == 201, created.text
    # Without a firmware declaration the class's op list is still checked.
    detail = await assert_refused(
        fleet, await register(fleet, manifest_with(fleet, None)), "unsupported_ops"
    )
    assert f"device class {DEVICE_CLASS!r} does not support: SOFTMAX" in detail


async def test_every_violation_is_listed_at_once(fleet: Fleet) -> None:
    await fleet.create_class()
    firmware = declaration(
        builtin_ops=["SOFTMAX"],
        ram_bytes=CLASS_RAM,
        inputs=[TensorDeclaration(shape=(1, 16), dtype="INT8")],
    )
    response = await register(fleet, manifest_with(fleet, firmware))
    detail = await assert_refused(fleet, response, "missing_ops", "ram_exceeded", "tensor_contract")
    assert "input 0 ('input') shape: the firmware expects [1, 16], the model has [1, 8]" in detail


async def test_a_release_whose_model_fails_inspection_is_refused_with_its_code(
    fleet: Fleet,
) -> None:
    await fleet.create_class()
    manifest = manifest_with(fleet, declaration(), model=b"not a flatbuffer" * 8)
    response = await register(fleet, manifest)
    problem = problem_of(response)
    assert (response.status_code, problem["code"]) == (422, "wrong_identifier")
    assert "TFL3" in problem["detail"]


@BACKENDS
async def test_a_fitting_release_is_registered_and_its_model_card_served(fleet: Fleet) -> None:
    await fleet.create_class()
    contract = TensorDeclaration(shape=(1, 8), dtype="INT8", scale=0.05, zero_point=-3)
    manifest = manifest_with(fleet, declaration(inputs=[contract]))
    response = await register(fleet, manifest)
    assert response.status_code == 201, response.text
    sha256 = hashlib.sha256(MODEL).hexdigest()
    model = await fleet.client.get(f"{API}/models/{sha256}", headers=fleet.auth(Role.VIEWER))
    assert model.status_code == 200, model.text
    assert model.json()["card"] == CARD.model_dump(mode="json")
    assert model.json()["reference"] is None
    registered = await fleet.client.get(
        f"{API}/releases/{response.json()['digest']}", headers=fleet.auth(Role.VIEWER)
    )
    firmware = registered.json()["manifest"]["components"][0]
    assert firmware["firmware"]["builtin_ops"] == list(RESOLVER)


async def test_an_uploaded_model_gets_its_card_and_other_blobs_none(fleet: Fleet) -> None:
    # Found by its TFL3 identifier even when uploaded as octet-stream.
    assert (await fleet.upload(MODEL)).status_code == 201
    assert (await fleet.upload(b"firmware image")).status_code == 201
    viewer = fleet.auth(Role.VIEWER)
    card = await fleet.client.get(
        f"{API}/models/{hashlib.sha256(MODEL).hexdigest()}", headers=viewer
    )
    assert card.json()["card"]["builtin_ops"] == list(RESOLVER)
    other = await fleet.client.get(
        f"{API}/models/{hashlib.sha256(b'firmware image').hexdigest()}", headers=viewer
    )
    assert (other.status_code, problem_of(other)["code"]) == (404, "not_found")


def reference_for(sha256: str) -> dict[str, Any]:
    return {
        "task": "gesture",
        "seed": 7,
        "size": 4,
        "model_sha256": sha256,
        "float_accuracy": 1.0,
        "int8_accuracy": 0.75,
        "histograms": {"predicted": {"counts": [1, 3], "proportions": [0.25, 0.75]}},
    }


@BACKENDS
async def test_reference_histograms_are_kept_with_the_model_card(fleet: Fleet) -> None:
    sha256 = hashlib.sha256(MODEL).hexdigest()
    await fleet.upload(MODEL, "application/vnd.tflite")
    url = f"{API}/models/{sha256}/reference"
    stored = await fleet.client.put(
        url, json=reference_for(sha256), headers=fleet.auth(Role.OPERATOR)
    )
    assert stored.status_code == 200, stored.text
    model = await fleet.client.get(f"{API}/models/{sha256}", headers=fleet.auth(Role.VIEWER))
    assert model.json()["reference"] == reference_for(sha256)
    wrong = await fleet.client.put(
        url, json=reference_for("b" * 64), headers=fleet.auth(Role.OPERATOR)
    )
    assert (wrong.status_code, problem_of(wrong)["code"]) == (422, "invalid_input")


async def test_without_a_declaration_the_flash_budget_still_holds(fleet: Fleet) -> None:
    body = {"name": DEVICE_CLASS, "ram_bytes": CLASS_RAM, "flash_bytes": 1024}
    created = await fleet.client.post(
        f"{API}/device-classes", json=body, headers=fleet.auth(Role.OPERATOR)
    )
    assert created.status_code == 201, created.text
    manifest = manifest_with(fleet, None)
    detail = await assert_refused(fleet, await register(fleet, manifest), "flash_exceeded")
    firmware, model, thresholds = (c.length for c in manifest.components)
    assert f"model {model:,} B" in detail
    assert f"= {firmware + model + thresholds:,} B exceeds device class" in detail
