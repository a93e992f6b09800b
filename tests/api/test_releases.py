"""Release registration refuses what a device would refuse, as 422 with the refusal code.

Each test is one attack or one mistake, and checks that nothing was registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fleet.domain.records import Role
from schemas import Envelope, ReleaseManifest
from tests.api.support import API, Fleet, problem_of
from tests.signer.simulator import RepositorySimulator, tamper

Attack = Callable[[RepositorySimulator, ReleaseManifest], Envelope | bytes]


def _raise_version(payload: dict[str, Any]) -> None:
    payload["version"] = "9.9.9"


ATTACKS: dict[str, tuple[Attack, str]] = {
    "tampered payload": (
        lambda sim, m: tamper(sim.sign_release(m), _raise_version),
        "signature_invalid",
    ),
    "one release key of two": (
        lambda sim, m: sim.sign_release(m, ["release-2"]),
        "threshold_not_met",
    ),
    "an attacker's key": (
        lambda sim, m: sim.sign_release(m, ["release-1", "attacker"]),
        "untrusted_key",
    ),
    "the director's key": (
        lambda sim, m: sim.sign_release(m, ["release-1", "director-1"]),
        "wrong_role_key",
    ),
    "a director envelope": (
        lambda sim, m: sim.director("dev-00001", sim.sign_release(m)),
        "wrong_payload_type",
    ),
    "a repeated key": (
        lambda sim, m: sim.sign_release(m).to_bytes().replace(b"{", b'{"payload":"",', 1),
        "duplicate_key",
    ),
    "not JSON": (lambda sim, m: b"\x00not json", "malformed"),
    "an unknown field": (
        lambda sim, m: sim.sign_release(m).to_bytes().replace(b"{", b'{"extra":1,', 1),
        "malformed",
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_a_bad_release_is_refused_with_its_code(fleet: Fleet, attack: str) -> None:
    make, code = ATTACKS[attack]
    await fleet.create_class()
    manifest = fleet.sim.release("1.0.0")
    await fleet.upload_components(manifest)
    response = await fleet.register(make(fleet.sim, manifest))
    assert (response.status_code, problem_of(response)["code"]) == (422, code)
    await _assert_nothing_registered(fleet)


async def test_a_release_naming_a_missing_artifact_is_refused(fleet: Fleet) -> None:
    await fleet.create_class()
    manifest = fleet.sim.release("1.0.0")
    firmware, *others = manifest.components
    for component in others:
        await fleet.upload(fleet.sim.artifacts[component.sha256], component.media_type)
    response = await fleet.register(fleet.sim.sign_release(manifest))
    problem = problem_of(response)
    assert (response.status_code, problem["code"]) == (422, "artifact_missing")
    assert firmware.sha256 in problem["detail"]
    await _assert_nothing_registered(fleet)


async def test_a_release_for_an_unknown_class_is_refused(fleet: Fleet) -> None:
    manifest = fleet.sim.release("1.0.0")
    await fleet.upload_components(manifest)
    response = await fleet.register(fleet.sim.sign_release(manifest))
    assert (response.status_code, problem_of(response)["code"]) == (404, "not_found")


async def test_a_release_must_be_sent_as_json_and_small(fleet: Fleet) -> None:
    envelope = fleet.sim.sign_release(fleet.sim.release("1.0.0")).to_bytes()
    headers = {**fleet.auth(Role.OPERATOR), "Content-Type": "application/octet-stream"}
    wrong_type = await fleet.client.post(f"{API}/releases", content=envelope, headers=headers)
    assert (wrong_type.status_code, problem_of(wrong_type)["code"]) == (
        415,
        "unsupported_media_type",
    )
    huge = await fleet.register(b" " * 20_000 + envelope)
    assert (huge.status_code, problem_of(huge)["code"]) == (413, "too_large")
    await _assert_nothing_registered(fleet)


async def _assert_nothing_registered(fleet: Fleet) -> None:
    viewer = fleet.auth(Role.VIEWER)
    listed = await fleet.client.get(f"{API}/releases", headers=viewer)
    assert listed.json()["items"] == []
    audit = await fleet.client.get(f"{API}/audit", headers=viewer)
    assert "release.register" not in {e["action"] for e in audit.json()["items"]}
