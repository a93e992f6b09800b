"""The real rollout engine with the drift gate: held at the canary wave when only the new
release's cohort drifts, not held when the old release's devices shift as well.

Telemetry is stored as ``tests/api/test_telemetry_drift.py`` does: 300 devices per
release and window, C = 1, local epsilon 4 (seeded exact discrete Laplace), released
through the real path (k, central noise); the gate reads it through the reference
registered with the new release's model. No MQTT, deterministic.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from fleet.domain.drift import Verdict
from fleet.services.drift import drift_gate
from fleet.services.drift_gate import drift_gates
from fleet.services.models import register_reference
from fleet.services.rollouts import tick_rollouts
from schemas import ComponentKind, DeviceState, ReleaseManifest, decode_payload
from tests.api.support import Fleet
from tests.api.test_telemetry_drift import SHIFTED, P, reference, store_windows
from tests.rollout.test_engine import DEVICES, SOAK, _act, _create, _show, plan, report
from tests.signer.simulator import START


async def _rollout_with_telemetry(
    fleet: Fleet,
    engine: Engine,
    *,
    new_shape: np.ndarray,
    old_shape: np.ndarray,
    drift_gate: bool = True,
    with_reference: bool = True,
    windows: int = 3,
) -> tuple[dict[str, Any], str, str]:
    """Devices on 1.0.0, a rollout of 1.1.0 (10 % canary, then all) whose canary reports
    healthy, three telemetry windows per release; one engine tick after the soak. Returns
    the rollout as the API shows it, and the new and old release digests."""
    await fleet.create_class()
    await fleet.enroll(*DEVICES)
    _, old = await fleet.released("1.0.0")
    envelope, new = await fleet.released("1.1.0")
    model = decode_payload(envelope, ReleaseManifest).component(ComponentKind.MODEL)
    assert model is not None
    if with_reference:
        register_reference(
            fleet.context.new_uow(),
            fleet.context.blobs,
            model.sha256,
            reference().model_copy(update={"model_sha256": model.sha256}),
            actor="test",
            now=START,
        )
    report(fleet, DEVICES, old, DeviceState.HEALTHY, START - timedelta(hours=1))

    rng = np.random.default_rng(11)
    store_windows(engine, new, [new_shape] * windows, rng)
    store_windows(engine, old, [old_shape] * windows, rng)

    rollout_id = await _create(
        fleet, new, plan(10, 100, policy="pause") | {"drift_gate": drift_gate}
    )
    assert (await _act(fleet, rollout_id, "approve")).status_code == 200
    canary = (await _show(fleet, rollout_id))["progress"][0]
    assert canary["cut"] == 4
    uow = fleet.context.new_uow()
    with uow:
        directed = [d for d in DEVICES if uow.director.latest(d) is not None]
    assert len(directed) == 4
    report(fleet, directed, new, DeviceState.HEALTHY, START)

    at = START + timedelta(seconds=SOAK)
    tick_rollouts(
        fleet.context.new_uow,
        fleet.context.director,
        now=lambda: at,
        root=fleet.context.root,
        extra_gates=drift_gates(),
    )
    return await _show(fleet, rollout_id), new, old


async def test_the_engine_holds_the_canary_when_only_the_new_release_drifts(
    fleet: Fleet, engine: Engine
) -> None:
    body, _, _ = await _rollout_with_telemetry(fleet, engine, new_shape=SHIFTED, old_shape=P)
    assert body["status"] == "paused"
    assert body["wave"] == 0
    failed = [e for e in body["events"] if e["kind"] == "gate_failed"]
    assert len(failed) == 1
    assert failed[0]["wave"] == 0
    assert failed[0]["detail"]["gate"] == "drift"
    assert failed[0]["detail"]["reason"].startswith("drift: rms")
    assert [w["directed"] for w in body["progress"]] == [4, 0]


async def test_the_engine_passes_a_shift_both_releases_show(fleet: Fleet, engine: Engine) -> None:
    body, new, old = await _rollout_with_telemetry(
        fleet, engine, new_shape=SHIFTED, old_shape=SHIFTED
    )
    assert body["status"] == "running"
    assert body["wave"] == 1
    assert not [e for e in body["events"] if e["kind"] == "gate_failed"]
    assert [w["directed"] for w in body["progress"]] == [4, 36]
    # the gate judged the data and saw the shift in both cohorts, rather than no data
    verdict = drift_gate(fleet.context.new_uow(), new, old)
    assert verdict.verdict is Verdict.PASS
    assert [r.code for r in verdict.reasons] == ["shared_shift"]


async def test_a_plan_that_turns_the_drift_gate_off_is_not_held(
    fleet: Fleet, engine: Engine
) -> None:
    body, _, _ = await _rollout_with_telemetry(
        fleet, engine, new_shape=SHIFTED, old_shape=P, drift_gate=False
    )
    assert (body["status"], body["wave"]) == ("running", 1)
    assert body["plan"]["drift_gate"] is False
    assert not [e for e in body["events"] if e["kind"] == "gate_failed"]


async def test_without_a_reference_for_the_new_model_there_is_no_drift_gate(
    fleet: Fleet, engine: Engine
) -> None:
    body, _, _ = await _rollout_with_telemetry(
        fleet, engine, new_shape=SHIFTED, old_shape=P, with_reference=False
    )
    assert (body["status"], body["wave"]) == ("running", 1)
    assert not [e for e in body["events"] if e["kind"] == "gate_failed"]


@pytest.mark.parametrize("windows", [0, 1, 2])
async def test_with_fewer_than_w_windows_the_drift_gate_waits_rather_than_fails(
    fleet: Fleet, engine: Engine, windows: int
) -> None:
    """A canary reports healthy before its first telemetry window closes: the wave soaks
    on, neither paused nor advanced, until the gate has W = 3 clean windows to pass it."""
    body, _, _ = await _rollout_with_telemetry(
        fleet, engine, new_shape=P, old_shape=P, windows=windows
    )
    assert (body["status"], body["wave"]) == ("running", 0)
    assert not [e for e in body["events"] if e["kind"] == "gate_failed"]
    assert [w["directed"] for w in body["progress"]] == [4, 0]
