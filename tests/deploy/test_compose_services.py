"""The configs compose.yaml hands to nginx and Mosquitto, run by the real programs:
``nginx -t`` on deploy/nginx/nginx.conf; broker-init's command, then Mosquitto with
deploy/mosquitto/mosquitto.compose.conf and its dynamic security plugin, probed with
MQTT 5 clients. Only the host paths and ports are changed; no Docker is needed."""

from __future__ import annotations

import getpass
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from fleet.domain.records import BrokerAccountChange
from fleet.transports.dynsec import DynsecAccounts
from fleet.transports.embedded_broker import find_dynsec_plugin, find_mosquitto, free_port
from fleet.transports.mqtt import MqttEndpoint
from tests.deploy.compose import load
from tests.deploy.dockerfile import DOCKERFILE, ROOT, instructions, stages

SERVICES: dict[str, Any] = load()["services"]
REPLICAS = ["fleet-1", "fleet-2"]
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
MOSQUITTO_DIR = ROOT / "deploy" / "mosquitto"
IMAGE_ENV = next(
    i for i in stages(instructions(DOCKERFILE.read_text()))["server"] if i.keyword == "ENV"
).pairs()


def _nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        pytest.skip("nginx is not installed (.ci/run installs nginx-core)")
    return found


def _nginx_test(text: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on the config, made loadable by this machine's nginx: Debian 12's
    1.22 lacks `resolve` in upstreams (1.27.3) and has the stream module as a module,
    and the replicas' names resolve only inside compose."""
    text = re.sub(r"\s+resolve(?=[\s;])", "", text)
    for number, replica in enumerate(REPLICAS, 1):
        text = text.replace(f"server {replica}:", f"server 127.0.0.{number}:")
    module = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
    if module.exists():
        text = f"load_module {module};\n{text}"
    (directory / "nginx.conf").write_text(text)
    return subprocess.run(
        [_nginx(), "-t", "-q", "-e", "stderr", "-p", str(directory), "-c", "nginx.conf"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_nginx_accepts_the_lb_config(tmp_path: Path) -> None:
    checked = _nginx_test(NGINX_CONF.read_text(), tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_nginx_test_refuses_a_broken_config(tmp_path: Path) -> None:
    broken = NGINX_CONF.read_text().replace("proxy_timeout 120s;", "proxy_timeout 120s")
    assert _nginx_test(broken, tmp_path).returncode != 0


def test_nginx_balances_exactly_the_replicas_on_the_image_ports() -> None:
    text = NGINX_CONF.read_text()
    upstreams = dict(re.findall(r"upstream (\w+) \{(.*?)\}", text, re.S))
    for upstream, port in (("fleet_http", "FLEET_HTTP_PORT"), ("fleet_coap", "FLEET_COAP_PORT")):
        servers = re.findall(r"^\s*server (\S+)", upstreams[upstream], re.M)
        assert servers == [f"{r}:{IMAGE_ENV[port]}" for r in REPLICAS], upstream
    listens = re.findall(r"^\s*listen (\d+)( udp)?;", text, re.M)
    published = [p.split(":", 1)[1] for p in SERVICES["lb"]["ports"]]
    assert [f"{port}{'/udp' if udp else ''}" for port, udp in listens] == published


@dataclass(frozen=True)
class ComposeBroker:
    server_port: int
    device_port: int
    password: str
    device_passwords: dict[str, str]
    init_script: list[str]
    init_env: dict[str, str]
    plugin_file: Path


def _wait_for_ports(process: subprocess.Popen[bytes], *ports: int) -> None:
    deadline = time.monotonic() + 10
    for port in ports:
        while True:
            assert process.poll() is None, "mosquitto exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"nothing listens on {port}"
                time.sleep(0.05)


def _broker_init(base: Path, password: str) -> tuple[list[str], dict[str, str]]:
    """broker-init's own command, with the host's paths and this checkout's `fleet`."""
    fleet = shutil.which("fleet")
    assert fleet is not None, "the fleet CLI is installed with the package"
    service = SERVICES["broker-init"]
    shell, flag = service["entrypoint"]
    (script,) = service["command"]
    script = script.replace("/tmp/server-password", f"{base}/server-password")
    script = script.replace("/mosquitto/", f"{base}/")
    script = script.replace("fleet broker ", f"{fleet} broker ")
    env = {"PATH": os.environ["PATH"], "MQTT_SERVER_PASSWORD": password}
    return [shell, flag, script], env


@pytest.fixture(scope="module")
def compose_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeBroker]:
    """Mosquitto as compose starts it: broker-init's command writes the dynsec plugin's
    starting file, then the broker runs with the compose config; device logins are
    made the way the replicas make them (DynsecAccounts)."""
    mosquitto, plugin = find_mosquitto(), find_dynsec_plugin()
    if mosquitto is None or plugin is None:
        pytest.skip("mosquitto with its dynsec plugin is not installed (.ci/run installs it)")
    base = tmp_path_factory.mktemp("compose-broker")
    (base / "config").mkdir()
    (base / "data").mkdir()
    password = "test-" + os.urandom(8).hex()
    script, env = _broker_init(base, password)
    subprocess.run(script, env=env, check=True, capture_output=True, timeout=60)
    for target in SERVICES["mosquitto"]["configs"]:
        source = load()["configs"][target["source"]]["file"]
        shutil.copy(ROOT / "deploy" / source, base / "config" / Path(target["target"]).name)
    server_port, device_port = free_port(), free_port()
    conf = (base / "config" / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1884\n", f"listener {server_port} 127.0.0.1\n")
    conf = conf.replace("listener 1883\n", f"listener {device_port} 127.0.0.1\n")
    conf = conf.replace("/usr/lib/mosquitto_dynamic_security.so", str(plugin))
    conf = conf.replace("/mosquitto/", f"{base}/")
    # Started as root, Mosquitto would switch to `mosquitto`, who cannot read a test's
    # temp dir; the container's entrypoint owns /mosquitto for that user instead.
    (base / "config" / "mosquitto.conf").write_text(f"user {getpass.getuser()}\n{conf}")
    command = [c.replace("/mosquitto/", f"{base}/") for c in SERVICES["mosquitto"]["command"]]
    assert command[0] == "mosquitto"
    log = (base / "mosquitto.log").open("wb")
    process = subprocess.Popen([mosquitto, *command[1:]], stdout=log, stderr=subprocess.STDOUT)
    accounts = DynsecAccounts(
        MqttEndpoint("127.0.0.1", server_port, "fleet-server", password), client_id="fleet-t"
    )
    try:
        _wait_for_ports(process, server_port, device_port)
        accounts.start()
        devices = {device_id: secrets.token_urlsafe(18) for device_id in ("dev-1", "dev-2")}
        accounts.apply(
            [BrokerAccountChange(n, d, "create", pw) for n, (d, pw) in enumerate(devices.items())]
        )
        accounts.stop()
        yield ComposeBroker(
            server_port, device_port, password, devices, script, env,
            base / "data" / "dynamic-security.json",
        )  # fmt: skip
    finally:
        accounts.stop()
        process.terminate()
        process.wait(timeout=10)
        log.close()


@dataclass
class Client:
    mqtt: mqtt.Client
    reason: str
    received: list[tuple[str, bytes]]
    disconnects: list[str]

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def _connect(
    port: int, username: str | None, password: str | None = None, *, client_id: str = ""
) -> Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or (username or "anonymous"),
        protocol=MQTTProtocolVersion.MQTTv5,
        reconnect_on_failure=False,
    )
    if username is not None:
        client.username_pw_set(username, password)
    answered = threading.Event()
    result = Client(client, "", [], [])

    def on_connect(_c: object, _u: object, _f: object, reason: Any, _p: object) -> None:
        result.reason = str(reason)
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda _c, _u, _f, reason, _p: result.disconnects.append(str(reason))
    client.on_message = lambda _c, _u, m: result.received.append((m.topic, m.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert answered.wait(5), "no CONNACK"
    return result


def _device(broker: ComposeBroker, device_id: str) -> Client:
    client = _connect(broker.device_port, device_id, broker.device_passwords[device_id])
    assert client.reason == "Success", client.reason
    return client


def _subscribed(client: Client, topic: str) -> Client:
    done = threading.Event()
    client.mqtt.on_subscribe = lambda *_: done.set()
    client.mqtt.subscribe(topic, qos=1)
    assert done.wait(5)
    return client


def _replica(broker: ComposeBroker, client_id: str) -> Client:
    return _connect(broker.server_port, "fleet-server", broker.password, client_id=client_id)


def _settle() -> None:
    time.sleep(0.5)  # what was going to arrive has arrived on loopback


@pytest.mark.parametrize(
    ("username", "password"),
    [(None, None), ("fleet-server", None), ("fleet-server", "wrong"), ("dev-1", None)],
)
def test_the_replicas_listener_takes_only_the_server_password(
    compose_broker: ComposeBroker, username: str | None, password: str | None
) -> None:
    refused = _connect(compose_broker.server_port, username, password)
    refused.close()
    assert refused.reason in ("Not authorized", "Bad user name or password")
    accepted = _connect(compose_broker.server_port, "fleet-server", compose_broker.password)
    accepted.close()
    assert accepted.reason == "Success"


def test_two_replicas_as_fleet_server_keep_their_own_sessions_and_share_device_messages(
    compose_broker: ComposeBroker,
) -> None:
    replicas = [
        _subscribed(_replica(compose_broker, replica), "$share/fleet/tf/d/+/status")
        for replica in REPLICAS
    ]
    device = _device(compose_broker, "dev-1")
    try:
        for n in range(10):
            device.mqtt.publish("tf/d/dev-1/status", b"%d" % n, qos=1).wait_for_publish(5)
        _settle()
        assert all(replica.mqtt.is_connected() for replica in replicas), "no takeover"
        counts = [len(replica.received) for replica in replicas]
        assert sum(counts) == 10 and min(counts) > 0, counts
    finally:
        for client in (*replicas, device):
            client.close()


@pytest.mark.parametrize(
    ("username", "password", "client_id"),
    [
        (None, None, "anonymous"),
        ("fleet-server", None, "fleet-server"),
        ("fleet-server", "wrong", "fleet-server"),
        ("dev-1", None, "dev-1"),
        ("dev-1", "wrong", "dev-1"),
        ("dev-1", "dev-1's", "dev-2"),  # its own login, another device's client id
    ],
)
def test_the_device_listener_takes_only_a_devices_own_login(
    compose_broker: ComposeBroker, username: str | None, password: str | None, client_id: str
) -> None:
    victim = _device(compose_broker, "dev-2")
    if password == "dev-1's":
        password = compose_broker.device_passwords["dev-1"]
    try:
        refused = _connect(compose_broker.device_port, username, password, client_id=client_id)
        refused.close()
        assert refused.reason in ("Not authorized", "Bad user name or password")
        _settle()
        assert victim.disconnects == [], "a refused login kicked dev-2 off"
    finally:
        victim.close()


def test_a_device_reaches_only_its_own_topics(compose_broker: ComposeBroker) -> None:
    replica = _subscribed(_replica(compose_broker, "fleet-1"), "tf/#")
    other = _subscribed(_subscribed(_device(compose_broker, "dev-2"), "#"), "tf/d/dev-2/#")
    device = _subscribed(_subscribed(_device(compose_broker, "dev-1"), "tf/d/+/#"), "tf/d/dev-1/#")
    try:
        device.mqtt.publish("tf/d/dev-2/status", b"spoofed", qos=1).wait_for_publish(5)
        device.mqtt.publish("tf/other", b"spoofed", qos=1).wait_for_publish(5)
        _settle()
        # A denied publish is answered, not punished: Mosquitto 2.0.11 with
        # max_queued_messages 0 dropped the connection here.
        assert device.disconnects == []
        device.mqtt.publish("tf/d/dev-1/status", b"own", qos=1).wait_for_publish(5)
        replica.mqtt.publish("tf/d/dev-2/desired", b"for dev-2", qos=1).wait_for_publish(5)
        _settle()
        assert replica.mqtt.is_connected()
        # The replica hears its own publish too (tf/#): MQTT has no no-local by default.
        assert replica.received == [
            ("tf/d/dev-1/status", b"own"),
            ("tf/d/dev-2/desired", b"for dev-2"),
        ]
        assert other.received == [("tf/d/dev-2/desired", b"for dev-2")]
        assert device.received == [("tf/d/dev-1/status", b"own")]
    finally:
        for client in (replica, other, device):
            client.close()


def test_broker_init_keeps_the_plugins_file_on_a_restart(compose_broker: ComposeBroker) -> None:
    before = compose_broker.plugin_file.read_bytes()
    assert b"dev-1" in before, "the plugin saved the device logins into the file"
    again = subprocess.run(
        compose_broker.init_script, env=compose_broker.init_env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "keeping the existing" in again.stdout
    assert compose_broker.plugin_file.read_bytes() == before
    assert oct(compose_broker.plugin_file.stat().st_mode & 0o777) == "0o600"


def test_the_compose_healthcheck_passes_against_it_and_needs_the_password(
    compose_broker: ComposeBroker,
) -> None:
    kind, command = SERVICES["mosquitto"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    command = command.replace("-p 1884", f"-p {compose_broker.server_port}")

    def check(password: str) -> int:
        env = {"PATH": os.environ["PATH"], "MQTT_SERVER_PASSWORD": password}
        return subprocess.run(
            ["sh", "-c", command], env=env, capture_output=True, timeout=10, check=False
        ).returncode

    assert check(compose_broker.password) == 0
    assert check("wrong-password") != 0
