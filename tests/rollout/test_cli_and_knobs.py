"""The `fleet rollout` CLI's plan building and the simulator's bad-release knob."""

from __future__ import annotations

from typer.testing import CliRunner

from device_sim.faults import Faults, in_share
from fleet.cli import app
from fleet.rollout_cli import build_plan


def test_waves_become_a_plan_with_shared_gates() -> None:
    plan = build_plan("1,10,100", soak_seconds=30, max_failure_rate=0.05,
                      max_rollback_rate=0.02, max_offline_share=0.5, min_reports=5,
                      on_failure="pause")  # fmt: skip
    assert [w["percent"] for w in plan["waves"]] == [1.0, 10.0, 100.0]
    assert plan["on_failure"] == "pause"
    assert plan["drift_gate"] is True
    assert build_plan("100", soak_seconds=0, max_failure_rate=0, max_rollback_rate=0,
                      max_offline_share=1, min_reports=1, on_failure="pause",
                      drift_gate=False)["drift_gate"] is False  # fmt: skip
    assert plan["waves"][0]["gates"] == {
        "max_failure_rate": 0.05,
        "max_rollback_rate": 0.02,
        "max_offline_share": 0.5,
        "min_reports": 5,
    }


def test_the_rollout_commands_are_mounted() -> None:
    result = CliRunner().invoke(app, ["rollout", "--help"])
    assert result.exit_code == 0
    for command in ("create", "list", "show", "act"):
        assert command in result.output


def test_the_bad_release_share_is_the_same_devices_every_time() -> None:
    ids = [f"dev-{i:05d}" for i in range(2000)]
    chosen = [d for d in ids if in_share(0.3, d, "a" * 64)]
    assert chosen == [d for d in ids if in_share(0.3, d, "a" * 64)]
    assert 0.27 < len(chosen) / len(ids) < 0.33
    assert chosen != [d for d in ids if in_share(0.3, d, "b" * 64)]
    assert not any(in_share(0.0, d, "a" * 64) for d in ids)


def test_the_share_is_a_named_fault() -> None:
    assert Faults.parse(["fail-boot-share=0.3"]) == Faults(fail_boot_share=0.3)
