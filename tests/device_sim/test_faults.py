"""One fault per test: the device must end on a known slot and say what happened."""

from __future__ import annotations

import asyncio

import pytest

from device_sim.device import BOOT_FAILED, HEALTH_CHECK_FAILED
from device_sim.errors import PowerLoss
from device_sim.faults import Faults
from schemas import DeviceState
from tests.device_sim.conftest import Sim, SimDevice, eventually
from tests.device_sim.director import Release


async def _on_r1_offered_r2(
    sim: Sim, device_id: str = "dev-1"
) -> tuple[SimDevice, Release, Release]:
    """A device running factory release 1.0.0 whose desired state is 2.0.0."""
    r1 = sim.director.release("1.0.0", security_version=1)
    r2 = sim.director.release("2.0.0", security_version=2, size=64 * 1024)
    sim.publish_release(r2)
    device = sim.provision(device_id, factory=r1)
    sim.server.publish_desired(device_id, sim.director.delivery(device_id, r2))
    return device, r1, r2


def _assert_on_old_slot(device: SimDevice, r1: Release) -> None:
    state = device.state()
    assert state.active_slot == "a"
    assert state.running_digest == r1.digest
    assert not state.trial and state.pending is None
    assert state.floors == {}


async def test_corrupted_download_fails_and_keeps_the_old_slot(sim: Sim) -> None:
    device, r1, r2 = await _on_r1_offered_r2(sim)
    sim.start(device, faults=Faults(corrupt_download=1.0))
    await sim.wait_for_state(device, "failed")

    final = sim.statuses(device)[-1]
    assert final.state == DeviceState.FAILED
    assert final.error_code == "artifact_digest_mismatch"
    assert final.release_digest == r2.digest
    assert final.running_release_digest == r1.digest
    assert "installing" not in {r.state.value for r in sim.statuses(device)}
    _assert_on_old_slot(device, r1)


async def test_corrupted_blob_on_the_server_is_refused_while_downloading(sim: Sim) -> None:
    device, r1, r2 = await _on_r1_offered_r2(sim)
    firmware = r2.manifest.components[0].sha256
    sim.artifacts.corrupt(firmware)
    sim.start(device)
    await sim.wait_for_state(device, "failed")

    final = sim.statuses(device)[-1]
    assert final.error_code == "artifact_digest_mismatch"
    assert "verifying" not in {r.state.value for r in sim.statuses(device)}
    _assert_on_old_slot(device, r1)
    assert not list((device.directory / "downloads").iterdir()), "bad bytes are not kept"


async def test_power_loss_mid_install_leaves_the_old_slot_and_a_restart_retries(sim: Sim) -> None:
    device, r1, r2 = await _on_r1_offered_r2(sim)
    sim.start(device, faults=Faults(power_loss_during_install=1.0))
    assert device.task is not None
    with pytest.raises(PowerLoss):
        await asyncio.wait_for(device.task, 10)
    device.task = None

    state = device.state()
    assert state.active_slot == "a" and state.running_digest == r1.digest
    assert "b" not in state.slots, "the half-written slot is not trusted"
    assert state.pending is not None and state.pending.release_digest == r2.digest
    # Reports still queued when the power went are lost, as on a real device.
    assert "healthy" not in {r.state.value for r in sim.statuses(device)}
    await eventually(lambda: sim.server.payloads("tf/d/dev-1/online")[-1:] == [b"offline"])

    sim.start(device)  # power back, no more faults
    await sim.wait_for_state(device, "healthy")
    state = device.state()
    assert state.active_slot == "b" and state.running_digest == r2.digest
    assert state.floors == {"firmware": 2, "model": 2, "thresholds": 2}
    refused = [r for r in sim.statuses(device) if r.state == DeviceState.REFUSED]
    assert not refused, "the retained Delivery seen again after the restart is not a replay"


async def test_flaky_link_resumes_with_range_and_converges(sim: Sim) -> None:
    device, _, r2 = await _on_r1_offered_r2(sim)
    sim.start(device, faults=Faults(flaky_link=0.6), seed=7)
    await sim.wait_for_state(device, "healthy")

    firmware = r2.manifest.components[0].sha256
    resumed = [r for r in sim.artifacts.ranges_for(firmware) if r and r != "bytes=0-"]
    assert resumed, "a dropped download continues with Range: bytes=N-"
    assert device.agent is not None and device.agent.fetcher is not None
    assert device.agent.fetcher.resumed >= len(resumed)
    assert device.state().running_digest == r2.digest


async def test_connection_cut_by_the_server_is_resumed(sim: Sim) -> None:
    device, _, r2 = await _on_r1_offered_r2(sim)
    firmware = r2.manifest.components[0].sha256
    sim.artifacts.cut_after(firmware, 10_000, 20_000)
    sim.start(device)
    await sim.wait_for_state(device, "healthy")
    assert sim.artifacts.ranges_for(firmware) == [None, "bytes=10000-", "bytes=30000-"]


@pytest.mark.parametrize(
    ("faults", "code"),
    [
        (Faults(health_check_failure=1.0), HEALTH_CHECK_FAILED),
        (Faults(fail_boot_probability=1.0), BOOT_FAILED),
    ],
)
async def test_new_image_failing_after_reboot_rolls_back(
    sim: Sim, faults: Faults, code: str
) -> None:
    device, r1, r2 = await _on_r1_offered_r2(sim)
    sim.start(device, faults=faults)
    await sim.wait_for_state(device, "rolled_back")

    reports = sim.statuses(device)
    assert [r.state.value for r in reports][-2:] == ["rebooting", "rolled_back"]
    assert reports[-1].error_code == code
    assert reports[-1].release_digest == r2.digest
    assert reports[-1].running_release_digest == r1.digest
    _assert_on_old_slot(device, r1)
    assert device.state().slots["b"].release_digest == r2.digest, "kept, but not booted"
