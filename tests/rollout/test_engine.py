"""The rollout engine over a real database and admin API: waves, gates, rollback."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from fleet.domain.records import InstalledComponent, Role, StatusEvent
from fleet.services.rollouts import tick_rollouts
from fleet.store import UnitOfWork
from schemas import Action, DeviceState
from tests.api.support import API, Fleet, problem_of
from tests.signer.simulator import START

DEVICES = [f"dev-{i:05d}" for i in range(40)]
SOAK = 5.0


def plan(*percents: float, policy: str = "rollback") -> dict[str, Any]:
    gates = {"max_failure_rate": 0.1, "max_rollback_rate": 0.1, "min_reports": 2}
    return {
        "on_failure": policy,
        "waves": [{"percent": p, "soak_seconds": SOAK, "gates": gates} for p in percents],
    }


async def _setup(fleet: Fleet, *, old_security: int = 0) -> tuple[str, str]:
    """Devices running release 1.0.0; returns (old digest, new digest)."""
    await fleet.create_class()
    await fleet.enroll(*DEVICES)
    _, old = await fleet.released("1.0.0")
    _, new = await fleet.released("1.1.0")
    report(fleet, DEVICES, old, DeviceState.HEALTHY, START - timedelta(hours=1), old_security)
    return old, new


COUNTER: dict[str, int] = {}


def report(
    fleet: Fleet,
    devices: list[str],
    digest: str,
    state: DeviceState,
    at: datetime,
    security: int = 0,
) -> None:
    uow: UnitOfWork = fleet.context.new_uow()
    with uow:
        for device_id in devices:
            counter = COUNTER[device_id] = COUNTER.get(device_id, 100) + 1
            running = digest if state is DeviceState.HEALTHY else None
            uow.devices.update_reported(
                device_id,
                counter=counter,
                seen_at=at,
                state=state,
                running_release_digest=running,
                components=[InstalledComponent("firmware", "1", security)],
            )
            uow.devices.set_online(device_id, True, at=at)
            uow.status_events.append(StatusEvent(device_id, counter, state, at, digest))
        uow.commit()


async def _create(fleet: Fleet, new: str, body_plan: dict[str, Any]) -> str:
    response = await fleet.client.post(
        f"{API}/rollouts",
        json={"release_digest": new, "plan": body_plan, "target": {"device_class": "nrf52840-kws"}},
        headers=fleet.auth(Role.OPERATOR),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _act(fleet: Fleet, rollout_id: str, action: str) -> Any:
    return await fleet.client.post(
        f"{API}/rollouts/{rollout_id}/{action}", headers=fleet.auth(Role.OPERATOR)
    )


async def _show(fleet: Fleet, rollout_id: str) -> dict[str, Any]:
    response = await fleet.client.get(
        f"{API}/rollouts/{rollout_id}", headers=fleet.auth(Role.VIEWER)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _directions(fleet: Fleet, device_id: str) -> list[tuple[str, Action, int | None]]:
    uow = fleet.context.new_uow()
    with uow:
        latest = uow.director.latest(device_id)
        return [] if latest is None else [(latest.release_digest, latest.action, latest.wave)]


def _tick(fleet: Fleet, at: datetime) -> int:
    return tick_rollouts(
        fleet.context.new_uow, fleet.context.director, now=lambda: at, root=fleet.context.root
    )


def _revoke_the_release_key(fleet: Fleet) -> None:
    """A new root drops release-1, one of the two keys every test release is signed with."""
    fleet.sim.rotate_root(release=["release-2", "release-3", "release-4"])


def _wave_devices(fleet: Fleet, new: str) -> list[str]:
    return [d for d in DEVICES if _directions(fleet, d) and _directions(fleet, d)[0][0] == new]


@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    COUNTER.clear()


async def test_a_healthy_release_goes_through_every_wave(fleet: Fleet) -> None:
    _, new = await _setup(fleet)
    rollout_id = await _create(fleet, new, plan(10, 50, 100))
    assert (await _act(fleet, rollout_id, "approve")).status_code == 200
    now = START
    for cut in (4, 20, 40):
        directed = _wave_devices(fleet, new)
        assert len(directed) == cut
        report(fleet, directed, new, DeviceState.HEALTHY, now)
        assert _tick(fleet, now + timedelta(seconds=1)) == 0  # still soaking
        now += timedelta(seconds=SOAK)
        _tick(fleet, now)
    body = await _show(fleet, rollout_id)
    assert body["status"] == "completed"
    assert [w["cut"] for w in body["progress"]] == [4, 20, 40]
    assert [w["directed"] for w in body["progress"]] == [4, 16, 20]
    assert [e["kind"] for e in body["events"]][:3] == ["created", "approved", "wave_started"]
    assert body["events"][-1]["kind"] == "completed"


async def test_a_failing_wave_rolls_its_devices_back_and_no_one_else(fleet: Fleet) -> None:
    old, new = await _setup(fleet)
    rollout_id = await _create(fleet, new, plan(10, 50, 100))
    await _act(fleet, rollout_id, "approve")
    wave = _wave_devices(fleet, new)
    report(fleet, wave[:2], new, DeviceState.HEALTHY, START)
    report(fleet, wave[2:], new, DeviceState.ROLLED_BACK, START)
    _tick(fleet, START + timedelta(seconds=1))
    body = await _show(fleet, rollout_id)
    assert body["status"] == "rolled_back"
    assert [e["kind"] for e in body["events"]][-2:] == ["gate_failed", "rolled_back"]
    assert body["rollback"] == {"directed": 4}
    for device_id in DEVICES:
        expected = [(old, Action.ROLLBACK, 0)] if device_id in wave else []
        assert _directions(fleet, device_id) == expected
    assert (await _act(fleet, rollout_id, "resume")).status_code == 409


async def test_a_release_key_revoked_mid_rollout_holds_the_next_wave(fleet: Fleet) -> None:
    _, new = await _setup(fleet)
    rollout_id = await _create(fleet, new, plan(10, 50, 100))
    await _act(fleet, rollout_id, "approve")
    canary = _wave_devices(fleet, new)
    report(fleet, canary, new, DeviceState.HEALTHY, START)
    _revoke_the_release_key(fleet)

    assert _tick(fleet, START + timedelta(seconds=SOAK)) == 0

    body = await _show(fleet, rollout_id)
    assert body["status"] == "paused"
    paused = body["events"][-1]
    assert paused["kind"] == "paused"
    assert paused["detail"]["reason"].startswith("release_untrusted: release kws 1.1.0")
    assert _wave_devices(fleet, new) == canary  # no device of wave 2 was sent it
    resumed = await _act(fleet, rollout_id, "resume")
    assert (resumed.status_code, problem_of(resumed)["code"]) == (409, "release_untrusted")
    assert (await _act(fleet, rollout_id, "abort")).status_code == 200


async def test_a_rollout_whose_release_key_was_revoked_before_approval_is_not_approved(
    fleet: Fleet,
) -> None:
    _, new = await _setup(fleet)
    rollout_id = await _create(fleet, new, plan(10, 100))
    _revoke_the_release_key(fleet)

    approved = await _act(fleet, rollout_id, "approve")

    assert (approved.status_code, problem_of(approved)["code"]) == (409, "release_untrusted")
    assert (await _show(fleet, rollout_id))["status"] == "created"
    assert _wave_devices(fleet, new) == []


async def test_rollback_skips_a_device_whose_floor_is_above_the_old_release(
    fleet: Fleet,
) -> None:
    _, new = await _setup(fleet)
    rollout_id = await _create(fleet, new, plan(10, 100))
    await _act(fleet, rollout_id, "approve")
    wave = _wave_devices(fleet, new)
    report(fleet, wave[:1], new, DeviceState.HEALTHY, START, security=99)
    response = await _act(fleet, rollout_id, "rollback")
    assert response.json()["status"] == "rolled_back"
    body = await _show(fleet, rollout_id)
    skipped = [k for k in body["rollback"] if k.startswith("skipped: firmware")]
    assert len(skipped) == 1
    assert body["rollback"]["directed"] == len(wave) - 1


async def test_a_device_is_in_one_active_rollout_at_a_time(fleet: Fleet) -> None:
    _, new = await _setup(fleet)
    await _create(fleet, new, plan(100))
    response = await fleet.client.post(
        f"{API}/rollouts",
        json={"release_digest": new, "plan": plan(100), "target": {"device_class": "nrf52840-kws"}},
        headers=fleet.auth(Role.OPERATOR),
    )
    assert response.status_code == 422
    assert problem_of(response)["code"] == "invalid_input"


async def test_operator_errors_are_problems(fleet: Fleet) -> None:
    _, new = await _setup(fleet)
    shrinking = plan(50, 10)
    response = await fleet.client.post(
        f"{API}/rollouts",
        json={"release_digest": new, "plan": shrinking, "target": {"device_class": "nrf52840-kws"}},
        headers=fleet.auth(Role.OPERATOR),
    )
    assert problem_of(response)["code"] == "invalid_plan"
    missing = await _act(fleet, "nope", "approve")
    assert (missing.status_code, problem_of(missing)["code"]) == (404, "not_found")
    rollout_id = await _create(fleet, new, plan(100))
    conflict = await _act(fleet, rollout_id, "resume")
    assert (conflict.status_code, problem_of(conflict)["code"]) == (409, "invalid_transition")
    viewer = await fleet.client.post(
        f"{API}/rollouts/{rollout_id}/approve", headers=fleet.auth(Role.VIEWER)
    )
    assert viewer.status_code == 403
    listed = await fleet.client.get(f"{API}/rollouts", headers=fleet.auth(Role.VIEWER))
    assert [r["id"] for r in listed.json()["items"]] == [rollout_id]
