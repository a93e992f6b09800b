"""Broker logins the server provisions (FLEET_BROKER_ACCOUNTS=dynsec) against a real
Mosquitto started from the shipped ``deploy/mosquitto/mosquitto.dynsec.conf.template``.

What a device can do is checked by delivery, not by SUBACK or PUBACK: Mosquitto grants
a denied subscription and acknowledges a denied publish, so only what arrives counts.
Each case runs on MQTT 3.1.1 and 5, at QoS 0, 1 and 2, all at once for 10 s, with a
positive control (the server's login sees the victim's traffic) so a silent broker
cannot pass for a strict one.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from device_sim.fleet import BROKER_LOGINS_FILE
from fleet.app import ConfigurationError, build_server
from fleet.client import AdminClient, ApiError
from fleet.domain.records import BrokerAccountChange
from fleet.local_setup import LocalServer, Trust
from fleet.settings import Settings
from fleet.transports.dynsec import DynsecAccounts
from fleet.transports.embedded_broker import (
    Broker,
    find_dynsec_plugin,
    find_mosquitto,
)
from fleet.transports.mqtt import MqttEndpoint
from tests.e2e.conftest import SERVER_PASSWORD
from tests.e2e.fleet_run import (
    DEVICE_CLASS,
    eventually,
    fleet_for,
    make_device_keys,
    raise_file_limit,
    run_until,
)
from tests.e2e.test_mqtt_delivery import register_signed_release

pytestmark = pytest.mark.skipif(
    find_mosquitto() is None or find_dynsec_plugin() is None,
    reason="mosquitto with its dynamic security plugin is not installed",
)
PROTOCOLS = {"3.1.1": paho.MQTTv311, "5": paho.MQTTv5}
WATCH_SECONDS = 10.0


@dataclass
class Session:
    """One MQTT connection and everything that happened to it."""

    client: paho.Client
    received: list[tuple[str, bytes]] = field(default_factory=list)
    connack: list[ReasonCode] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    broker: Broker,
    username: str | None,
    password: str | None,
    client_id: str,
    *,
    protocol: int = paho.MQTTv5,
    port: int | None = None,
) -> Session:
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
        reconnect_on_failure=False,
    )  # fmt: skip
    session = Session(client)
    if username is not None:
        client.username_pw_set(username, password)

    def on_connect(c: object, u: object, flags: object, reason: ReasonCode, p: object) -> None:
        session.connack.append(reason)
        if not reason.is_failure:
            session.connected.set()
        session.answered.set()

    def on_disconnect(c: object, u: object, flags: object, reason: object, p: object) -> None:
        session.disconnects.append(time.monotonic())
        session.answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = lambda c, u, m: session.received.append((m.topic, bytes(m.payload)))
    client.connect(broker.host, port or broker.port)
    client.loop_start()
    session.answered.wait(5)
    return session


def refused(session: Session) -> bool:
    session.stop()
    return not session.connected.is_set() and any(r.is_failure for r in session.connack)


def _enroll(client: AdminClient, keys: Path) -> dict[str, str]:
    client.create_device_class(DEVICE_CLASS, ram_bytes=262_144, flash_bytes=1_048_576)
    answer = client.enroll((keys / "devices.json").read_bytes())
    logins = answer["broker_logins"]
    assert [x["username"] for x in logins] == answer["ids"]
    assert all(x["client_id"] == x["username"] for x in logins)
    (keys / BROKER_LOGINS_FILE).write_text(json.dumps(logins))
    return {x["username"]: x["password"] for x in logins}


def _wait_for_login(broker: Broker, device_id: str, password: str) -> None:
    """The server applies new logins asynchronously (an outbox): wait until one works."""

    def works() -> bool:
        session = connect(broker, device_id, password, device_id)
        session.stop()
        return session.connected.is_set()

    assert eventually(works, timeout=10), f"{device_id}'s login never worked"


def test_a_device_reaches_only_its_own_topics_and_cannot_pose_as_another(
    server: LocalServer, dynsec_broker: Broker, tmp_path: Path
) -> None:
    keys = tmp_path / "devices"
    make_device_keys(keys, 7)
    with AdminClient(server.base_url, server.admin_token) as admin:
        passwords = _enroll(admin, keys)
    victim, *attackers = sorted(passwords)
    for device_id in (victim, attackers[-1]):
        _wait_for_login(dynsec_broker, device_id, passwords[device_id])

    own = connect(dynsec_broker, victim, passwords[victim], victim)
    own.client.subscribe(f"tf/d/{victim}/#", qos=1)
    control = connect(
        dynsec_broker, "fleet-server", SERVER_PASSWORD, "control", port=dynsec_broker.server_port
    )
    control.client.subscribe("tf/#", qos=1)
    cases = [(p, q) for p in PROTOCOLS for q in (0, 1, 2)]
    sessions = {}
    for attacker, (protocol, qos) in zip(attackers[:6], cases, strict=True):
        session = connect(
            dynsec_broker, attacker, passwords[attacker], attacker, protocol=PROTOCOLS[protocol]
        )
        assert session.connected.is_set(), (attacker, session.connack)
        for topic_filter in (f"tf/d/{victim}/#", "tf/d/+/#", "#", "$SYS/#"):
            session.client.subscribe(topic_filter, qos=qos)
        sessions[attacker] = (session, protocol, qos)
    time.sleep(0.5)

    deadline = time.monotonic() + WATCH_SECONDS
    while time.monotonic() < deadline:
        own.client.publish(f"tf/d/{victim}/probe", b"victim", qos=1)
        for attacker, (session, _, qos) in sessions.items():
            for topic in (f"tf/d/{victim}/status", f"tf/d/{victim}/desired", "tf/other"):
                session.client.publish(topic, f"from {attacker}".encode(), qos=qos)
        time.sleep(0.5)
    time.sleep(0.5)

    # The positive control: the victim's traffic flowed, and the server's login saw it.
    assert (f"tf/d/{victim}/probe", b"victim") in control.received
    assert (f"tf/d/{victim}/probe", b"victim") in own.received
    for attacker, (session, protocol, qos) in sessions.items():
        assert session.received == [], (attacker, protocol, qos, session.received[:3])
        assert not any(p.startswith(b"from ") for _, p in control.received), control.received[:3]
        assert not any(p.startswith(b"from ") for _, p in own.received), own.received[:3]
        session.stop()

    attacker = attackers[0]
    for protocol in PROTOCOLS.values():
        posing = connect(dynsec_broker, attacker, passwords[attacker], victim, protocol=protocol)
        assert refused(posing), ("client id of another device", posing.connack)
        assert refused(connect(dynsec_broker, None, None, "anonymous", protocol=protocol))
        assert refused(
            connect(dynsec_broker, attacker, "not-its-password", attacker, protocol=protocol)
        )
        assert refused(connect(dynsec_broker, victim, passwords[attacker], victim))
    time.sleep(0.5)
    assert own.disconnects == [], "a refused login kicked the victim off"
    own.client.publish(f"tf/d/{victim}/probe", b"still here", qos=1).wait_for_publish(5)
    assert eventually(lambda: (f"tf/d/{victim}/probe", b"still here") in own.received, timeout=5)
    own.stop()
    control.stop()


def test_a_revoked_device_is_disconnected_within_5_s_and_cannot_log_in_again(
    server: LocalServer, dynsec_broker: Broker, tmp_path: Path
) -> None:
    keys = tmp_path / "devices"
    make_device_keys(keys, 2)
    with AdminClient(server.base_url, server.admin_token) as admin:
        passwords = _enroll(admin, keys)
        device_id, neighbour = sorted(passwords)
        for d in (device_id, neighbour):
            _wait_for_login(dynsec_broker, d, passwords[d])
        session = connect(dynsec_broker, device_id, passwords[device_id], device_id)
        other = connect(dynsec_broker, neighbour, passwords[neighbour], neighbour)
        assert session.connected.is_set() and other.connected.is_set()

        started = time.monotonic()
        revoked = admin.revoke_device(device_id)
        assert revoked["revoked_at"] is not None
        assert eventually(lambda: bool(session.disconnects), timeout=5, interval=0.05), (
            "still connected 5 s after revocation"
        )
        print(f"revoked device disconnected {session.disconnects[0] - started:.2f} s after")
        session.stop()
        assert refused(connect(dynsec_broker, device_id, passwords[device_id], device_id))
        assert other.disconnects == []
        other.stop()
        with pytest.raises(ApiError) as again:
            admin.new_broker_login(device_id)
        assert (again.value.status, again.value.code) == (409, "device_revoked")

        assert _dynsec_client(dynsec_broker, device_id) == "disabled"
        admin.call("POST", f"/devices/{device_id}/decommission")
        assert eventually(
            lambda: _dynsec_client(dynsec_broker, device_id) == "absent", timeout=5
        ), "a decommissioned device's login is still on the broker"
        assert _dynsec_client(dynsec_broker, neighbour) == "enabled"


def test_a_rollout_completes_on_fifty_devices_with_provisioned_logins(
    server: LocalServer, dynsec_broker: Broker, trust: Trust, tmp_path: Path
) -> None:
    raise_file_limit()
    keys = tmp_path / "devices"
    make_device_keys(keys, 50)
    with AdminClient(server.base_url, server.admin_token) as admin:
        passwords = _enroll(admin, keys)
        last = sorted(passwords)[-1]
        _wait_for_login(dynsec_broker, last, passwords[last])
        digest = register_signed_release(admin, trust, tmp_path / "release", "1.0.0")
        gates = {"max_failure_rate": 0.1, "max_rollback_rate": 0.1, "min_reports": 1}
        waves = [{"percent": p, "soak_seconds": 0.5, "gates": gates} for p in (10, 100)]
        admin.create_rollout(
            digest, {"on_failure": "rollback", "waves": waves}, device_class=DEVICE_CLASS,
            rollout_id="provisioned",
        )  # fmt: skip
        admin.act_on_rollout("provisioned", "approve")
        fleet = fleet_for(dynsec_broker.url, server.base_url, keys, trust.root)
        reached = run_until(fleet, lambda v: v.healthy_on(digest) == 50, timeout=120)
        assert reached, fleet.view.counts()
        assert eventually(
            lambda: admin.rollout("provisioned")["status"] == "completed", timeout=30
        ), admin.rollout("provisioned")


def test_a_bulk_enrollment_of_three_hundred_devices_gets_every_login(
    server: LocalServer, dynsec_broker: Broker, tmp_path: Path
) -> None:
    """300 new logins are 600 dynsec commands, about 190 kB in one message: over the
    shipped 128 KiB ``max_packet_size``, which makes the broker drop the server's
    connection. The server must cut them into messages the broker takes."""
    keys = tmp_path / "devices"
    make_device_keys(keys, 300)
    with AdminClient(server.base_url, server.admin_token) as admin:
        started = time.monotonic()
        passwords = _enroll(admin, keys)
        first, *_, last = sorted(passwords)
        assert eventually(lambda: _dynsec_client(dynsec_broker, last) == "enabled", timeout=60), (
            "the last device's login never reached the broker"
        )
        print(f"300 logins on the broker {time.monotonic() - started:.1f} s after enrolling")
        for device_id in (first, last):
            _wait_for_login(dynsec_broker, device_id, passwords[device_id])


def test_account_changes_never_touch_a_login_that_is_not_a_devices(
    dynsec_broker: Broker,
) -> None:
    """Enrollment refuses the server's names as device ids; this is the second wall, for
    a row queued before that rule: a change for `fleet-server` leaves its login alone."""
    endpoint = MqttEndpoint(
        dynsec_broker.host, dynsec_broker.server_port, "fleet-server", SERVER_PASSWORD
    )
    accounts = DynsecAccounts(endpoint, client_id="accounts-" + secrets.token_hex(4))
    accounts.start()

    def server_login(password: str) -> bool:
        session = connect(
            dynsec_broker, "fleet-server", password, "probe-" + secrets.token_hex(4),
            port=dynsec_broker.server_port,
        )  # fmt: skip
        session.stop()
        return session.connected.is_set()

    try:
        device = "dev-wall-" + secrets.token_hex(3)
        for n, action in enumerate(("create", "disable", "delete")):
            password = "hijacked" if action == "create" else None
            accounts.apply([BrokerAccountChange(n, "fleet-server", action, password)])
            assert not server_login("hijacked")
            assert server_login(SERVER_PASSWORD), f"{action} reached the server's login"
        # The positive control: the same calls do change a device's login, twice over.
        for n, password in enumerate(("first", "second")):
            accounts.apply([BrokerAccountChange(10 + n, device, "create", password)])
            _wait_for_login(dynsec_broker, device, password)
        assert refused(connect(dynsec_broker, device, "first", device))
        accounts.apply([BrokerAccountChange(12, device, "delete", None)])
        assert _dynsec_client(dynsec_broker, device) == "absent"
    finally:
        accounts.stop()


def _dynsec_client(broker: Broker, username: str) -> str:
    """What the broker's dynsec plugin holds for a login: enabled, disabled or absent."""
    control = connect(
        broker, "fleet-server", SERVER_PASSWORD, "probe-" + secrets.token_hex(4),
        port=broker.server_port,
    )  # fmt: skip
    try:
        control.client.subscribe("$CONTROL/dynamic-security/v1/response", qos=1)
        time.sleep(0.2)
        # The server's own answers arrive on the same topic: ours is the one marked so.
        mark = "probe-" + secrets.token_hex(4)
        command = {"command": "getClient", "username": username, "correlationData": mark}
        control.client.publish(
            "$CONTROL/dynamic-security/v1", json.dumps({"commands": [command]}), qos=1
        )

        def answers() -> list[dict[str, Any]]:
            every = (r for _, p in control.received for r in json.loads(p)["responses"])
            return [r for r in every if r.get("correlationData") == mark]

        assert eventually(lambda: bool(answers()), timeout=5)
    finally:
        control.stop()
    (response,) = answers()
    if response.get("error") == "Client not found":
        return "absent"
    return "disabled" if response["data"]["client"].get("disabled") else "enabled"


@pytest.mark.parametrize(
    ("url_username", "client_id"), [("tinyfleet", "fleet-1"), ("fleet-server", "replica-1")]
)
def test_managed_logins_need_the_servers_names_in_their_namespace(
    trust: Trust, tmp_path: Path, url_username: str, client_id: str
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        root_path=trust.root,
        director_key_path=trust.director_key,
        mqtt_url=f"mqtt://{url_username}:pw@127.0.0.1:1",
        mqtt_client_id=client_id,
        broker_accounts="dynsec",
    )
    with pytest.raises(ConfigurationError, match="must start with 'fleet-'"):
        build_server(settings)
