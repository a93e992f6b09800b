"""The configs compose.yaml hands to nginx and Mosquitto, run by the real programs:
``nginx -t`` on deploy/nginx/nginx.conf, and Mosquitto started by the compose service's
own command with deploy/mosquitto/mosquitto.compose.conf, then probed with MQTT 5
clients. Only the host paths and ports are changed; no Docker is needed."""

from __future__ import annotations

import getpass
import os
import re
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

from fleet.transports.embedded_broker import find_mosquitto, free_port
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


@pytest.fixture(scope="module")
def compose_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeBroker]:
    """Mosquitto as the compose service starts it: its command, its config, its ACLs."""
    mosquitto = find_mosquitto()
    if mosquitto is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto is not installed (.ci/run installs it)")
    base = tmp_path_factory.mktemp("compose-broker")
    (base / "config").mkdir()
    (base / "data").mkdir()
    for target in SERVICES["mosquitto"]["configs"]:
        source = load()["configs"][target["source"]]["file"]
        shutil.copy(ROOT / "deploy" / source, base / "config" / Path(target["target"]).name)
    server_port, device_port = free_port(), free_port()
    conf = (base / "config" / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1884\n", f"listener {server_port} 127.0.0.1\n")
    conf = conf.replace("listener 1883\n", f"listener {device_port} 127.0.0.1\n")
    conf = conf.replace("/mosquitto/", f"{base}/")
    # Started as root, Mosquitto would switch to `mosquitto`, who cannot read a test's
    # temp dir; the container's entrypoint owns /mosquitto for that user instead.
    (base / "config" / "mosquitto.conf").write_text(f"user {getpass.getuser()}\n{conf}")
    shell, flag, script = SERVICES["mosquitto"]["command"]
    script = script.replace("/mosquitto/", f"{base}/")
    script = script.replace("chown mosquitto:mosquitto", 'chown "$(id -u):$(id -g)"')
    script = script.replace("exec mosquitto ", f"exec {mosquitto} ")
    password = "test-" + os.urandom(8).hex()
    log = (base / "mosquitto.log").open("wb")
    process = subprocess.Popen(
        [shell, flag, script], stdout=log, stderr=subprocess.STDOUT,
        env={"PATH": os.environ["PATH"], "MQTT_SERVER_PASSWORD": password},
    )  # fmt: skip
    try:
        _wait_for_ports(process, server_port, device_port)
        yield ComposeBroker(server_port, device_port, password)
    finally:
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
    device = _connect(compose_broker.device_port, "dev-1")
    try:
        assert device.reason == "Success"
        for n in range(10):
            device.mqtt.publish("tf/d/dev-1/status", b"%d" % n, qos=1).wait_for_publish(5)
        _settle()
        assert all(replica.mqtt.is_connected() for replica in replicas), "no takeover"
        counts = [len(replica.received) for replica in replicas]
        assert sum(counts) == 10 and min(counts) > 0, counts
    finally:
        for client in (*replicas, device):
            client.close()


def test_a_device_reaches_only_its_own_topics_even_named_fleet_server(
    compose_broker: ComposeBroker,
) -> None:
    replica = _subscribed(_replica(compose_broker, "fleet-1"), "tf/#")
    impostor = _subscribed(_connect(compose_broker.device_port, "fleet-server"), "tf/#")
    device = _connect(compose_broker.device_port, "dev-1")
    try:
        device.mqtt.publish("tf/d/dev-2/status", b"spoofed", qos=1).wait_for_publish(5)
        _settle()
        # A denied publish is answered, not punished: Mosquitto 2.0.11 with
        # max_queued_messages 0 dropped the connection here.
        assert device.disconnects == []
        device.mqtt.publish("tf/d/dev-1/status", b"own", qos=1).wait_for_publish(5)
        _settle()
        assert replica.mqtt.is_connected()
        assert replica.received == [("tf/d/dev-1/status", b"own")]
        assert impostor.received == []
    finally:
        for client in (replica, impostor, device):
            client.close()


def test_the_compose_healthcheck_passes_against_it(compose_broker: ComposeBroker) -> None:
    _, *command = SERVICES["mosquitto"]["healthcheck"]["test"]
    command[command.index("-p") + 1] = str(compose_broker.device_port)
    assert subprocess.run(command, capture_output=True, timeout=10).returncode == 0
