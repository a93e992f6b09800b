"""Faults during delivery: corrupted downloads, power cuts, forged and replayed status."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device_sim.faults import Faults
from device_sim.state import StateStore
from fleet.client import AdminClient
from fleet.local_setup import LocalServer, Trust, running_server
from fleet.transports.embedded_broker import Broker
from schemas import DeviceState, StatusReport
from signer.keys import SigningKey, load_signing_key
from signer.signing import sign_model
from tests.e2e.fleet_run import (
    DEVICE_CLASS,
    eventually,
    fleet_for,
    make_device_keys,
    run_fleets_until,
    run_until,
    server_states,
)
from tests.e2e.test_mqtt_delivery import register_signed_release

pytestmark = pytest.mark.slow
CORRUPT, POWER_CUT, HEALTHY = slice(0, 10), slice(10, 20), slice(20, 30)


def _published_status(broker: Broker, device_id: str, payload: bytes) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv5)
    client.username_pw_set(device_id)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(f"tf/d/{device_id}/status", payload, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _dropped(local: LocalServer, reason: str) -> float:
    import httpx

    metrics = httpx.get(f"{local.base_url}/metrics").text
    label = f'fleet_device_messages_dropped_total{{kind="status",reason="{reason}"}}'
    lines = [line for line in metrics.splitlines() if line.startswith(label)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_corruption_power_cuts_and_forged_status_leave_devices_on_a_working_slot(
    trust: Trust, mosquitto: Broker, tmp_path: Path
) -> None:
    keys = tmp_path / "devices"
    enrollment = make_device_keys(keys, 30)
    mqtt_url = f"mqtt://fleet-server@{mosquitto.host}:{mosquitto.port}"
    with (
        running_server(trust, tmp_path / "server", mqtt_url=mqtt_url) as local,
        AdminClient(local.base_url, local.admin_token) as client,
    ):
        client.create_device_class(DEVICE_CLASS, ram_bytes=262_144, flash_bytes=1_048_576)
        ids = client.enroll(enrollment.read_bytes())["ids"]
        v1 = register_signed_release(client, trust, tmp_path / "v1", "1.0.0")
        client.assign(v1, ids)
        everyone = fleet_for(mosquitto.url, local.base_url, keys, trust.root)
        assert run_until(everyone, lambda v: v.healthy_on(v1) == 30, timeout=60)

        v2 = register_signed_release(client, trust, tmp_path / "v2", "2.0.0")
        client.assign(v2, ids)
        corrupt = fleet_for(
            mosquitto.url, local.base_url, keys, trust.root,
            faults=Faults(corrupt_download=1.0), devices=CORRUPT,
        )  # fmt: skip
        cut = fleet_for(
            mosquitto.url, local.base_url, keys, trust.root,
            faults=Faults(power_loss_during_install=1.0), devices=POWER_CUT,
        )  # fmt: skip
        healthy = fleet_for(mosquitto.url, local.base_url, keys, trust.root, devices=HEALTHY)

        def settled() -> bool:
            refused = corrupt.view.counts().get("failed (artifact_digest_mismatch)", 0)
            return healthy.view.healthy_on(v2) == 10 and refused == 10 and cut.view.restarts >= 20

        assert run_fleets_until([corrupt, cut, healthy], settled, timeout=90), (
            corrupt.view.counts(),
            cut.view.restarts,
            healthy.view.counts(),
        )

        def server_agrees() -> bool:
            states = server_states(client)
            return (
                states[f"healthy:{v2[:8]}"] == 10
                and states[f"failed:{v1[:8]}"] == 10
                and sum(n for k, n in states.items() if k.endswith(v1[:8])) == 20
            )

        assert eventually(server_agrees, timeout=30), server_states(client)
        for device_id in ids[POWER_CUT]:
            state = StateStore(keys / "state" / device_id / "state.json").load()
            assert state.running_digest == v1, f"{device_id} left its working slot"
        history = client.history(ids[0])
        assert "artifact_digest_mismatch" in {e["error_code"] for e in history}

        recovered = fleet_for(mosquitto.url, local.base_url, keys, trust.root, devices=POWER_CUT)
        assert run_until(recovered, lambda v: v.healthy_on(v2) == 10, timeout=60)

        victim = ids[HEALTHY][0]
        before = client.device(victim)
        forged = StatusReport(
            device_id=victim,
            counter=10**9,
            sent=datetime.now(UTC),
            state=DeviceState.FAILED,
            error_code="forged",
        )
        dropped_before = _dropped(local, "forged")
        _published_status(mosquitto, victim, sign_model(forged, [SigningKey.generate()]).to_bytes())
        assert eventually(lambda: _dropped(local, "forged") == dropped_before + 1, timeout=10)
        after = client.device(victim)
        assert {k: after[k] for k in ("state", "running_release", "components")} == {
            k: before[k] for k in ("state", "running_release", "components")
        }

        # A counter the history already holds, signed with the device's own key: what a
        # replay of one of its earlier reports looks like to the server.
        genuine_key = load_signing_key(keys / f"{victim}.key")
        recorded = client.history(victim)[-1]["counter"]
        replayed = forged.model_copy(update={"counter": recorded})
        dropped_before = _dropped(local, "replayed")
        _published_status(mosquitto, victim, sign_model(replayed, [genuine_key]).to_bytes())
        assert eventually(lambda: _dropped(local, "replayed") == dropped_before + 1, timeout=10)
        assert client.device(victim)["state"] == before["state"]
