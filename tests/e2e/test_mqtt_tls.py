"""The server's MQTT connection over TLS (``FLEET_MQTT_URL=mqtts://…``) to a real
Mosquitto TLS listener, with a CA and broker certificate made here by ``cryptography``:
the broker's certificate is verified against ``FLEET_MQTT_CA_FILE`` (or the system's
trust store), host name included."""

from __future__ import annotations

import getpass
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleet.app import ConfigurationError, _mqtt_endpoint
from fleet.settings import Settings
from fleet.transports.embedded_broker import _accepts, _stop, find_mosquitto, free_port
from fleet.transports.errors import BrokerUnavailable
from fleet.transports.mqtt import MqttEndpoint, ServerMqtt
from tests.e2e.fleet_run import eventually

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificates(directory: Path) -> None:
    """ca.crt, and broker.crt/broker.key for the name localhost only, signed by it."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("tinyfleet test CA"))
        .issuer_name(_name("tinyfleet test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost")]
    broker = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "broker.crt").write_bytes(broker.public_bytes(serialization.Encoding.PEM))
    (directory / "broker.key").write_bytes(_pem(key))


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A Mosquitto whose only listener is TLS; its port and the CA file."""
    _certificates(tmp_path)
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        # As the test's user: Mosquitto started as root otherwise drops to "mosquitto",
        # which cannot read the key in the test's private directory.
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\n"
        "allow_anonymous true\npersistence false\n"
        f"cafile {tmp_path / 'ca.crt'}\ncertfile {tmp_path / 'broker.crt'}\n"
        f"keyfile {tmp_path / 'broker.key'}\nlog_dest stdout\n"
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    process = subprocess.Popen([str(find_mosquitto()), "-c", str(config)], stdout=log, stderr=log)
    try:
        assert eventually(lambda: _accepts(port), timeout=10), "the TLS listener never opened"
        yield port, tmp_path / "ca.crt"
    finally:
        _stop(process)
        log.close()


def _round_trip(endpoint: MqttEndpoint) -> bytes:
    received: list[bytes] = []
    arrived = threading.Event()

    def on_message(topic: str, payload: bytes) -> None:
        received.append(payload)
        arrived.set()

    mqtt = ServerMqtt(endpoint, client_id="fleet-tls-test", on_message=on_message)
    mqtt.subscribe("tf/tls/echo")
    mqtt.start(timeout=5)
    try:
        assert eventually(lambda: mqtt.connected, timeout=5)
        mqtt.wait_published([mqtt.publish("tf/tls/echo", b"over TLS")], timeout=5)
        assert arrived.wait(5), "the message never came back"
    finally:
        mqtt.stop()
    return received[0]


def test_the_server_connects_over_tls_to_a_broker_its_ca_vouches_for(
    tls_broker: tuple[int, Path],
) -> None:
    port, ca = tls_broker
    settings = Settings(mqtt_url=f"mqtts://localhost:{port}", mqtt_ca_file=ca)
    endpoint, _ = _mqtt_endpoint(settings)
    assert (endpoint.tls, endpoint.port, endpoint.ca_file) == (True, port, str(ca))
    assert _round_trip(endpoint) == b"over TLS"


# A failed handshake leaves the SSLSocket Python made for it to the garbage collector,
# which warns (CPython issue 113280, in 3.11): not a socket of ours to close.
_HANDSHAKE_LEAK = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@_HANDSHAKE_LEAK
def test_a_broker_certificate_nobody_vouches_for_is_refused(
    tls_broker: tuple[int, Path],
) -> None:
    port, _ = tls_broker
    with pytest.raises(BrokerUnavailable, match=r"over TLS .*FLEET_MQTT_CA_FILE"):
        _round_trip(MqttEndpoint.parse(f"mqtts://localhost:{port}"))  # the system's CAs


@_HANDSHAKE_LEAK
def test_a_certificate_for_another_host_name_is_refused(tls_broker: tuple[int, Path]) -> None:
    port, ca = tls_broker
    # The same listener and CA as the test above, reached as 127.0.0.1, a name the
    # certificate does not hold.
    with pytest.raises(BrokerUnavailable):
        _round_trip(MqttEndpoint.parse(f"mqtts://127.0.0.1:{port}", ca_file=str(ca)))


def test_mqtt_urls_say_what_is_wrong_with_them() -> None:
    assert MqttEndpoint.parse("mqtts://h").port == 8883
    assert MqttEndpoint.parse("mqtt://h").port == 1883
    with pytest.raises(ConfigurationError, match="mqtt:// or mqtts://"):
        _mqtt_endpoint(Settings(mqtt_url="http://broker:1883"))
    with pytest.raises(ConfigurationError, match="a CA file is for mqtts://"):
        _mqtt_endpoint(Settings(mqtt_url="mqtt://broker:1883", mqtt_ca_file=Path("ca.crt")))
