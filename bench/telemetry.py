"""Telemetry reports ingested per second, and the server's peak RSS, in one run.

    python -m bench.telemetry [DEVICES]        (default 10,000)

A real server (SQLite, in this process) and Mosquitto; DEVICES devices enrolled with
Ed25519 keys derived from their index. A child process pre-signs one telemetry report
per device (7 histograms and 2 counters, C = 1, local eps = 4, the exact discrete Laplace law) and
publishes them as fast as it can from one paho client on the server listener; the
server ingests them (MQTT → verified → aggregated, counters stored), then the window is
closed (the server's clock is moved past it) and the aggregate released and stored.

* raw broker rate: a plain (non-shared) subscriber in this process counts the same
  messages; messages/s from its first to its last arrival;
* ingest rate: reports/s from the first arrival to the server's last ingested report;
* release: seconds from moving the clock until the API shows the stored aggregate;
* peak server RSS: ``ru_maxrss`` of this process, which holds the server and the raw
  subscriber but not the publisher or its keys.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import re
import resource
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from bench.arguments import size_argument
from device_sim.telemetry import telemetry_topic, window_start
from fleet.client import AdminClient
from fleet.local_setup import create_trust, serve_in_process
from fleet.settings import Settings
from fleet.transports.embedded_broker import Broker, running_mosquitto
from schemas.device import Mechanism, TelemetryReport, TelemetryWindow
from schemas.privacy import privatise, privatise_counters, simulated_discrete_laplace
from signer.keys import SigningKey
from signer.signing import sign_model

DEVICE_CLASS = "bench-class"
WINDOW_SECONDS = 3600
MECHANISM = Mechanism(name="discrete_laplace", epsilon=4.0, cap=1)
HISTOGRAMS = {
    "rms_x": 14, "rms_y": 14, "rms_z": 14, "peak": 14, "confidence": 14, "predicted": 4,
    "latency_us": 12,
}  # fmt: skip
RELEASE = "be" * 32


def device_key(index: int) -> SigningKey:
    seed = hashlib.sha256(f"bench device {index}".encode()).digest()
    return SigningKey(Ed25519PrivateKey.from_private_bytes(seed))


def device_id(index: int) -> str:
    return f"bench-{index:06d}"


def publish_reports(host: str, port: int, devices: int, start_iso: str) -> None:
    """The child: pre-sign every report, then publish them all as fast as QoS 1 allows."""
    start = datetime.fromisoformat(start_iso)
    rng = np.random.default_rng(8)
    noise = simulated_discrete_laplace(rng)
    messages = []
    for index in range(devices):
        histograms = {
            name: tuple(int(c) for c in privatise(rng.multinomial(4, np.ones(n) / n),
                                                  MECHANISM, rng, noise))
            for name, n in HISTOGRAMS.items()
        }  # fmt: skip
        report = TelemetryReport(
            device_id=device_id(index),
            counter=1,
            window=TelemetryWindow(start=start, seconds=WINDOW_SECONDS),
            release_digest=RELEASE,
            model_version="1.0.0",
            mechanism=MECHANISM,
            histograms=histograms,
            counters=privatise_counters(
                {"inference_errors": int(rng.random() < 0.05), "reboots": 0}, MECHANISM, noise
            ),
        )
        envelope = sign_model(report, [device_key(index)])
        messages.append((telemetry_topic(report.device_id), envelope.to_bytes()))
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher",
                         protocol=paho.MQTTv5)  # fmt: skip
    client.username_pw_set("fleet-server")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


class RawCounter:
    """A plain subscription to every device's telemetry: the broker's own delivery rate."""

    def __init__(self, broker: Broker, expected: int) -> None:
        self.expected = expected
        self.times: list[float] = []
        self.done = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw",
                                   protocol=paho.MQTTv5)  # fmt: skip
        self._client.username_pw_set("fleet-server")
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.server_port)
        self._client.subscribe("tf/d/+/telemetry", qos=1)
        self._client.loop_start()

    def _on_message(self, _c: paho.Client, _u: object, _m: paho.MQTTMessage) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) == self.expected:
            self.done.set()

    def rate(self) -> float:
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@contextmanager
def running_server(workdir: Path, broker: Broker, clock: Callable[[], datetime]) -> Iterator[str]:
    """A server in this process; yields the API's base URL (admin token: ADMIN)."""
    trust = create_trust(workdir / "offline")
    settings = Settings(
        data_dir=workdir / "server",
        mqtt_url=broker.server_url(),
        root_path=trust.root,
        director_key_path=trust.director_key,
        bootstrap_admin_token=ADMIN,
        coap_port=0,
        telemetry_min_reporters=50,
    )
    with serve_in_process(settings, clock=clock) as (_, base_url):
        yield base_url


ADMIN = "tf_" + secrets.token_urlsafe(32)


def ingested(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics").text
    found = re.search(r"^fleet_telemetry_ingested_total ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def released_aggregates(base_url: str) -> list[object]:
    response = httpx.get(
        f"{base_url}/api/v1/telemetry/aggregates",
        params={"release": RELEASE},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    response.raise_for_status()
    items: list[object] = response.json()["items"]
    return items


def enroll(client: AdminClient, devices: int) -> None:
    client.create_device_class(DEVICE_CLASS, ram_bytes=1 << 20, flash_bytes=1 << 22)
    body = [
        {"id": device_id(i), "device_class": DEVICE_CLASS,
         "public_key": device_key(i).public.public}
        for i in range(devices)
    ]  # fmt: skip
    client.enroll(json.dumps(body).encode())


def run(workdir: Path, devices: int) -> dict[str, float]:
    offset = [timedelta(0)]

    def clock() -> datetime:
        return datetime.now(UTC) + offset[0]

    with running_mosquitto(workdir / "broker") as broker, running_server(
        workdir, broker, clock
    ) as base_url, AdminClient(base_url, ADMIN) as client:  # fmt: skip
        enroll(client, devices)
        start = window_start(clock(), WINDOW_SECONDS)
        raw = RawCounter(broker, devices)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        publisher = multiprocessing.get_context("spawn").Process(
            target=publish_reports,
            args=(broker.host, broker.server_port, devices, start.isoformat()),
        )
        publisher.start()
        deadline = time.monotonic() + 600
        while ingested(base_url) < devices:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {ingested(base_url):.0f} of {devices} ingested")
            time.sleep(0.05)
        last_ingested = time.perf_counter()
        publisher.join()
        raw.done.wait(60)
        raw.close()
        offset[0] = start + timedelta(seconds=WINDOW_SECONDS + 10) - datetime.now(UTC)
        moved = time.perf_counter()
        while not released_aggregates(base_url):
            time.sleep(0.05)
        released = time.perf_counter() - moved
        return {
            "raw": raw.rate(),
            "ingest": (devices - 1) / (last_ingested - raw.times[0]),
            "release_seconds": released,
            "rss_before_mib": rss_before / 1024,
            "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def main() -> None:
    devices = size_argument(__doc__, "devices", int, 10_000)
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(Path(tmp), devices)
    bins = sum(HISTOGRAMS.values())
    print(f"{devices:,} devices, one signed report each "
          f"({len(HISTOGRAMS)} histograms, {bins} bins, 2 counters)")  # fmt: skip
    print(f"raw broker delivery (plain subscriber): {figures['raw']:,.0f} msg/s")
    print(f"ingested (MQTT → verified → aggregated → counters stored): "
          f"{figures['ingest']:,.0f} reports/s")  # fmt: skip
    print(f"window close → released and stored: {figures['release_seconds']:.2f} s")
    print(f"server process RSS: {figures['rss_before_mib']:,.0f} MiB before the reports, "
          f"peak {figures['rss_peak_mib']:,.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
