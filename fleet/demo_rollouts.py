"""The staged-rollout part of ``fleet demo``: a bad release caught in its canary wave
and rolled back, then a good release through every wave.

The bad release cannot boot on 30 % of the devices (``device_sim``'s
``fail_boot_share``: the same devices every run). A canary of a few devices may by
chance hold none of them, so the demo picks a rollout id whose canary holds at least
one (with the same pure cohort function the server uses) and says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from device_sim.faults import Faults, in_share
from device_sim.fleet import Fleet, FleetView
from fleet.client import AdminClient
from fleet.domain.rollout_plan import cohort_order

__all__ = ["BAD_SHARE", "canary_with_a_failure", "demo_plan", "run_rollout"]

BAD_SHARE = 0.3
PERCENTS = (10, 50, 100)


def demo_plan(soak_seconds: float = 2.0) -> dict[str, Any]:
    gates = {"max_failure_rate": 0.1, "max_rollback_rate": 0.1, "min_reports": 3}
    waves = [{"percent": p, "soak_seconds": soak_seconds, "gates": gates} for p in PERCENTS]
    return {"on_failure": "rollback", "waves": waves}


def canary_with_a_failure(ids: list[str], digest: str, *, prefix: str) -> str:
    canary = max(1, -(-len(ids) * PERCENTS[0] // 100))
    for attempt in range(10_000):
        rollout_id = f"{prefix}-{attempt}"
        if any(in_share(BAD_SHARE, d, digest) for d in cohort_order(rollout_id, ids)[:canary]):
            return rollout_id
    raise RuntimeError("no device of this fleet fails the bad release")


def _table(rollout: dict[str, Any], view: FleetView, started: float) -> Table:
    table = Table(
        title=f"rollout {rollout['id']}: {rollout['status']}, wave "
        f"{rollout['wave'] + 1}/{rollout['waves']} after {time.monotonic() - started:4.1f} s"
    )
    table.add_column("wave")
    table.add_column("devices (cumulative)", justify="right")
    table.add_column("states")
    for wave in rollout["progress"]:
        states = ", ".join(f"{k} {v}" for k, v in sorted(wave["states"].items()))
        table.add_row(str(wave["index"] + 1), str(wave["cut"]), states)
    table.add_row("devices", str(view.total), ", ".join(f"{k} {v}" for k, v in
                                                        sorted(view.counts().items())))  # fmt: skip
    return table


async def _watch(
    console: Console,
    client: AdminClient,
    fleet: Fleet,
    rollout_id: str,
    done: Callable[[dict[str, Any], FleetView], bool],
    timeout: float,
) -> bool:
    started = time.monotonic()
    state: dict[str, Any] = {"rollout": client.rollout(rollout_id)}

    def until(view: FleetView) -> bool:
        return bool(done(state["rollout"], view))

    with Live(_table(state["rollout"], fleet.view, started), console=console) as live:
        run = asyncio.create_task(fleet.run(until=until, timeout=timeout))
        while not run.done():
            state["rollout"] = await asyncio.to_thread(client.rollout, rollout_id)
            live.update(_table(state["rollout"], fleet.view, started))
            await asyncio.wait({run}, timeout=0.3)
        state["rollout"] = client.rollout(rollout_id)
        live.update(_table(state["rollout"], fleet.view, started))
    return run.result()


def run_rollout(
    console: Console,
    client: AdminClient,
    fleet: Fleet,
    *,
    release: str,
    rollout_id: str,
    device_class: str,
    bad: bool,
    back_to: str,
    timeout: float,
) -> bool:
    """Create and approve a rollout, run the devices until it ends; True if it ended as
    expected (a bad release rolled back with its canary on ``back_to``, a good one
    completed with every device on it)."""
    client.create_rollout(release, demo_plan(), device_class=device_class, rollout_id=rollout_id)
    client.act_on_rollout(rollout_id, "approve")
    # The same devices, with a fresh view; the bad release's knob only for its run.
    fleet = replace(fleet, faults=Faults(fail_boot_share=BAD_SHARE) if bad else fleet.faults)

    def done(rollout: dict[str, Any], view: FleetView) -> bool:
        if bad:
            directed = rollout["progress"][0]["directed"]
            back = sum(
                1
                for r in view.latest.values()
                if r.running_release_digest == back_to and r.release_digest == back_to
                and r.state.value == "healthy"
            )  # fmt: skip
            return rollout["status"] == "rolled_back" and back == view.total and directed > 0
        return rollout["status"] == "completed" and view.healthy_on(release) == view.total

    reached = asyncio.run(_watch(console, client, fleet, rollout_id, done, timeout))
    console.print()
    return reached
