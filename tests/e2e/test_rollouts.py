"""Staged rollouts end to end: real `fleet serve` processes, Mosquitto and simulated devices.

1. One fleet of 1,000 devices on release 1.0.0 (a plain assignment) goes through two
   rollouts, 1 % → 10 % → 50 % → 100 %:
   - a bad release that 30 % of devices cannot boot (``fail_boot_share``, the same
     devices every run) is caught in the canary wave and rolled back; no device outside
     wave 1 is ever told to install it;
   - a good release completes, although the server is SIGKILLed mid-rollout, and a device
     that loses power during its install and one whose image fails its health check both
     end on a working slot.
   The rollout ids are chosen (by the same pure functions the server uses) so the bad
   release's canary holds at least 3 of its failing devices: a 10-device sample of a
   30 % failure share holds at most one failure 15 % of the time, which would make the
   test a coin toss rather than a check of the engine.
2. Two replicas on PostgreSQL (distinct MQTT client ids on the broker's server listener,
   one database); the one holding the engine lock is SIGKILLed mid-rollout and the other
   finishes it.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from device_sim.faults import Faults, in_share
from device_sim.fleet import Fleet
from fleet.client import AdminClient
from fleet.domain.rollout_plan import cohort_order
from fleet.local_setup import Trust
from fleet.transports.embedded_broker import Broker
from schemas import StatusReport
from tests.e2e.fleet_run import (
    DEVICE_CLASS,
    eventually,
    fleet_for,
    make_device_keys,
    raise_file_limit,
    run_fleets_until,
    run_until,
    server_sees_all_healthy,
    server_states,
)
from tests.e2e.server_process import ServerProcess
from tests.e2e.server_process import replicas as make_replicas
from tests.e2e.test_mqtt_delivery import register_signed_release

pytestmark = pytest.mark.slow
DEVICES = 1000
BAD_SHARE = 0.3
POWER_CUT, HEALTH_FAIL = DEVICES - 2, DEVICES - 1  # indexes of the two faulty devices


def plan(soak: float, *, min_reports: int = 10) -> dict[str, Any]:
    gates = {"max_failure_rate": 0.1, "max_rollback_rate": 0.1, "min_reports": min_reports}
    return {
        "on_failure": "rollback",
        "waves": [{"percent": p, "soak_seconds": soak, "gates": gates} for p in (1, 10, 50, 100)],
    }


def _canary_with_failures(ids: list[str], digest: str) -> str:
    for attempt in range(1000):
        rollout_id = f"bad-{attempt}"
        canary = cohort_order(rollout_id, ids)[: DEVICES // 100]
        if sum(in_share(BAD_SHARE, d, digest) for d in canary) >= 3:
            return rollout_id
    raise AssertionError("no rollout id gives a canary with 3 failing devices")


def _rows(database_url: str, query: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query), params))
    finally:
        engine.dispose()


def _in_background(work: Callable[[], bool]) -> tuple[threading.Thread, dict[str, bool]]:
    outcome: dict[str, bool] = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("ok", work()))
    thread.start()
    return thread, outcome


def _wait_for(client: AdminClient, rollout_id: str, check: Callable[[Any], bool]) -> Any:
    # A string, not the dict: pytest -q abbreviates a dict's repr, and the waves' states
    # and the events are what says why a rollout stood still.
    assert eventually(lambda: check(client.rollout(rollout_id)), timeout=60, interval=0.3), (
        json.dumps(client.rollout(rollout_id), indent=1, default=str)
    )
    return client.rollout(rollout_id)


def _assert_waves_only_grew(detail: Any) -> None:
    started = [e for e in detail["events"] if e["kind"] == "wave_started"]
    assert [e["wave"] for e in started] == list(range(len(started)))  # each wave once
    cuts = [e["detail"]["cut"] for e in started]
    assert cuts == sorted(cuts)


def test_a_bad_release_is_caught_in_its_canary_and_a_good_one_survives_a_crash(
    trust: Trust, mosquitto: Broker, tmp_path: Path
) -> None:
    raise_file_limit()
    keys = tmp_path / "devices"
    make_device_keys(keys, DEVICES)
    server = ServerProcess(
        trust=trust,
        data_dir=tmp_path / "server",
        mqtt_url=f"mqtt://fleet-server@{mosquitto.host}:{mosquitto.port}",
        admin_token="tf_" + secrets.token_urlsafe(32),
    )
    database = f"sqlite:///{server.data_dir / 'fleet.db'}"
    seen: dict[str, set[str]] = {}

    def observe(report: StatusReport) -> None:
        if report.release_digest:
            seen.setdefault(report.device_id, set()).add(report.release_digest)

    def devices(faults: Faults, part: slice = slice(None)) -> Fleet:
        fleet = fleet_for(
            mosquitto.url, server.base_url, keys, trust.root, faults=faults, devices=part
        )
        fleet.observers.append(observe)
        return fleet

    server.start()
    client = AdminClient(server.base_url, server.admin_token)
    try:
        client.create_device_class(DEVICE_CLASS, ram_bytes=262_144, flash_bytes=1_048_576)
        ids = client.enroll((keys / "devices.json").read_bytes())["ids"]
        base = register_signed_release(client, trust, tmp_path / "r1", "1.0.0")
        bad = register_signed_release(client, trust, tmp_path / "r2", "1.1.0")
        good = register_signed_release(client, trust, tmp_path / "r3", "1.2.0")

        # The starting point: every device on 1.0.0, which a rollback returns to.
        started = time.monotonic()
        client.assign(base, ids)
        fleet = devices(Faults())
        # Convergence is what is checked here, not its speed (bench/ has that): the limit
        # only has to end a run that stands still, on a CI machine as busy as it gets.
        assert run_until(fleet, lambda v: v.healthy_on(base) == DEVICES, timeout=300), (
            fleet.view.counts()
        )
        # A rollout records what each device runs when it is created (what a rollback
        # returns to), so it must wait for the server, not only the devices, to know it:
        # a report still in the ingest queue would leave that device nothing to return to.
        assert eventually(lambda: server_sees_all_healthy(client, base, DEVICES), timeout=30), (
            server_states(client)
        )
        print(f"baseline: {DEVICES} devices on 1.0.0 in {time.monotonic() - started:.1f} s")

        # A bad release: caught in the canary wave, its devices sent back to 1.0.0.
        started = time.monotonic()
        bad_id = _canary_with_failures(ids, bad)
        canary = set(cohort_order(bad_id, ids)[: DEVICES // 100])
        client.create_rollout(bad, plan(2.0), device_class=DEVICE_CLASS, rollout_id=bad_id)
        client.act_on_rollout(bad_id, "approve")
        fleet = devices(Faults(fail_boot_share=BAD_SHARE))

        def rolled_back(view: Any) -> bool:
            return (
                all(
                    (r := view.latest.get(d)) is not None
                    and r.running_release_digest == base
                    and r.release_digest == base
                    and r.state.value == "healthy"
                    for d in canary
                )
                and client.rollout(bad_id)["status"] == "rolled_back"
            )

        # The bound matches the baseline's: this phase also starts all 1,000 devices again,
        # which on a loaded CI machine took 60 s by itself.
        assert run_until(fleet, rolled_back, timeout=120), (
            fleet.view.counts(),
            {k: v for k, v in client.rollout(bad_id).items() if k in ("status", "rollback")},
            {d: fleet.view.latest.get(d) for d in sorted(canary)},
        )
        detail = client.rollout(bad_id)
        elapsed = time.monotonic() - started
        print(f"bad release rolled back in {elapsed:.1f} s: {detail['progress'][0]}")
        assert detail["wave"] == 0
        assert [e["kind"] for e in detail["events"]][-2:] == ["gate_failed", "rolled_back"]
        assert detail["rollback"] == {"directed": len(canary)}
        told = _rows(
            database,
            "SELECT device_id, action, wave FROM director_outbox WHERE release_digest = :r",
            r=bad,
        )
        assert sorted(d for d, _, _ in told) == sorted(canary)
        assert {(a, w) for _, a, w in told} == {("install", 0)}
        assert {d for d, releases in seen.items() if bad in releases} <= canary
        reported = _rows(
            database, "SELECT DISTINCT device_id FROM status_event WHERE release_digest = :r", r=bad
        )
        assert {d for (d,) in reported} <= canary

        # A good release, with a server crash mid-rollout and two faulty devices.
        started = time.monotonic()
        good_id = "good-1"
        client.create_rollout(good, plan(2.0), device_class=DEVICE_CLASS, rollout_id=good_id)
        fleets = [
            devices(Faults(), slice(0, POWER_CUT)),
            devices(Faults(power_loss_during_install=0.5), slice(POWER_CUT, HEALTH_FAIL)),
            devices(Faults(health_check_failure=1.0), slice(HEALTH_FAIL, DEVICES)),
        ]
        normal, cut, unhealthy = fleets
        power_cut_id, health_fail_id = ids[POWER_CUT], ids[HEALTH_FAIL]

        def settled() -> bool:
            last = unhealthy.view.latest.get(health_fail_id)
            return (
                normal.view.healthy_on(good) == POWER_CUT
                and cut.view.healthy_on(good) == 1
                and last is not None
                and last.state.value == "rolled_back"
                and last.release_digest == good
            )

        runner, outcome = _in_background(lambda: run_fleets_until(fleets, settled, timeout=150))
        client.act_on_rollout(good_id, "approve")
        _wait_for(client, good_id, lambda r: r["wave"] >= 1)
        server.kill()
        time.sleep(1.0)
        server.start()
        client.close()
        client = AdminClient(server.base_url, server.admin_token)
        runner.join()
        assert outcome.get("ok"), [f.view.counts() for f in fleets]
        detail = _wait_for(client, good_id, lambda r: r["status"] == "completed")
        print(
            f"good release on {DEVICES} devices in {time.monotonic() - started:.1f} s "
            f"(server killed once): {detail['progress']}"
        )
        _assert_waves_only_grew(detail)
        installs = _rows(
            database,
            "SELECT device_id, count(*) FROM director_outbox "
            "WHERE release_digest = :r AND action = 'install' GROUP BY device_id",
            r=good,
        )
        assert len(installs) == DEVICES
        assert {count for _, count in installs} == {1}
        # The two faulty devices end on a working slot: the new one, or the old one.
        assert cut.view.latest[power_cut_id].running_release_digest == good
        assert unhealthy.view.latest[health_fail_id].running_release_digest == base
    finally:
        client.close()
        server.stop()


REPLICA_DEVICES = 200


def _lock_holders(database_url: str) -> list[str]:
    """Which replicas (by PostgreSQL application_name) hold the rollout engine's lock."""
    rows = _rows(
        database_url,
        "SELECT a.application_name FROM pg_locks l JOIN "
        "pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
        "AND l.granted AND a.datname = current_database()",  # pg_locks is cluster-wide
    )
    return sorted(name for (name,) in rows)


@pytest.mark.parametrize("ending", ["killed", "terminated"])
def test_a_second_replica_finishes_a_rollout_when_the_first_stops(
    trust: Trust, mosquitto: Broker, tmp_path: Path, database_url: str | None, ending: str
) -> None:
    """SIGKILL is a crash; SIGTERM is an orchestrator's stop, which must exit 0 within
    10 s after draining. Either way the other replica finishes the rollout, with one
    install manifest per device."""
    if database_url is None:
        pytest.skip("replicas share a PostgreSQL database; SQLite serves one process")
    raise_file_limit()
    keys = tmp_path / "devices"
    make_device_keys(keys, REPLICA_DEVICES)
    token = "tf_" + secrets.token_urlsafe(32)
    replicas = make_replicas(
        trust,
        tmp_path / "server",
        mqtt_url=mosquitto.server_url(),
        admin_token=token,
        database_url=database_url,
    )
    first, second = replicas
    first.start()
    time.sleep(1.0)  # the first replica takes the engine lock
    second.start()
    try:
        with AdminClient(second.base_url, token) as client:
            client.create_device_class(DEVICE_CLASS, ram_bytes=262_144, flash_bytes=1_048_576)
            ids = client.enroll((keys / "devices.json").read_bytes())["ids"]
            digest = register_signed_release(client, trust, tmp_path / "r1", "1.0.0")
            client.create_rollout(
                digest, plan(1.0, min_reports=5), device_class=DEVICE_CLASS, rollout_id="replicated"
            )
            fleet = fleet_for(mosquitto.url, second.base_url, keys, trust.root)
            started = time.monotonic()
            runner, outcome = _in_background(
                lambda: run_until(
                    fleet, lambda v: v.healthy_on(digest) == REPLICA_DEVICES, timeout=120
                )
            )
            client.act_on_rollout("replicated", "approve")
            _wait_for(client, "replicated", lambda r: r["wave"] >= 1)
            assert _lock_holders(database_url) == ["fleet-a"]
            if ending == "killed":
                first.kill()
            else:
                code, seconds = first.terminate()
                print(f"SIGTERM mid-rollout: exit {code} after {seconds:.1f} s")
                assert (code, seconds < 10) == (0, True), first.log_tail()
            assert eventually(lambda: _lock_holders(database_url) == ["fleet-b"], timeout=10)
            runner.join()
            assert outcome.get("ok"), fleet.view.counts()
            detail = _wait_for(client, "replicated", lambda r: r["status"] == "completed")
            print(
                f"{REPLICA_DEVICES} devices via two replicas, one {ending}: "
                f"{time.monotonic() - started:.1f} s"
            )
            _assert_waves_only_grew(detail)
            installs = _rows(
                database_url,
                "SELECT device_id, count(*) FROM director_outbox "
                "WHERE release_digest = :r GROUP BY device_id",
                r=digest,
            )
            assert sorted(d for d, _ in installs) == sorted(ids)
            assert {count for _, count in installs} == {1}
    finally:
        for replica in replicas:
            replica.stop()
