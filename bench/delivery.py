"""Devices updated per second, next to the raw broker round-trip rate, in one run.

    python -m bench.delivery [DEVICES]        (default 1,000)

1. Broker baseline: paho publishes N QoS 1 messages through the same Mosquitto to a paho
   subscriber; messages/s from the first publish to the last delivery.
2. Delivery: a server (SQLite, in-process) with the same broker; DEVICES simulated devices
   enrolled; a release signed by fleet-sign is assigned to all of them; devices/s from
   the assignment until the server has recorded every device healthy on it.
Each device update is about eight status messages plus three downloads, so the ratio
below says how far from the broker's raw rate the whole pipeline is.
"""

from __future__ import annotations

import asyncio
import os
import resource
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.arguments import size_argument
from device_sim.fleet import Endpoints, Fleet, load_enrollment
from fleet.client import AdminClient
from fleet.local_setup import ArtifactFile, create_trust, run_tool, running_server, sign_release
from fleet.toolkit.packaged import packaged_model
from fleet.transports.embedded_broker import running_mosquitto
from signer.fileio import read_envelope

DEVICE_CLASS = "bench-class"


def broker_round_trip_rate(host: str, port: int, messages: int = 20_000) -> float:
    received = 0
    done = threading.Event()

    def on_message(_c: paho.Client, _u: object, _m: paho.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received == messages:
            done.set()

    subscriber = paho.Client(CallbackAPIVersion.VERSION2, client_id="fleet-server-bench-sub",
                             protocol=paho.MQTTv5)  # fmt: skip
    subscriber.username_pw_set("fleet-server")
    subscriber.on_message = on_message
    subscriber.connect(host, port)
    subscriber.subscribe("tf/d/bench/status", qos=1)
    subscriber.loop_start()
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench", protocol=paho.MQTTv5)
    publisher.username_pw_set("bench")
    publisher.max_inflight_messages_set(1000)
    publisher.connect(host, port)
    publisher.loop_start()
    time.sleep(0.5)
    payload = os.urandom(400)  # about a signed status report
    started = time.perf_counter()
    for _ in range(messages):
        publisher.publish("tf/d/bench/status", payload, qos=1)
    finished = done.wait(120)
    elapsed = time.perf_counter() - started
    for client in (publisher, subscriber):
        client.disconnect()
        client.loop_stop()
    if not finished:
        raise RuntimeError(f"only {received} of {messages} messages arrived")
    return messages / elapsed


def delivery_rate(workdir: Path, mqtt_url: str, devices: int) -> tuple[float, float]:
    trust = create_trust(workdir / "offline")
    artifacts = {
        "fw.bin": ArtifactFile("firmware", "fw", "1.0.0", 1, "application/octet-stream",
                               os.urandom(32 * 1024)),
        "model.tflite": ArtifactFile("model", "m", "1.0.0", 1, "application/vnd.tflite",
                                     packaged_model()),
    }  # fmt: skip
    envelope = sign_release(trust, workdir / "release", name="bench", version="1.0.0",
                            device_class=DEVICE_CLASS, artifacts=artifacts)  # fmt: skip
    keys = workdir / "devices"
    run_tool("fleet-sim", "keys", "--devices", str(devices), "--out", keys, "--class", DEVICE_CLASS)
    with (
        running_server(trust, workdir / "server", mqtt_url=mqtt_url) as local,
        AdminClient(local.base_url, local.admin_token) as client,
    ):
        client.create_device_class(DEVICE_CLASS, ram_bytes=1 << 20, flash_bytes=1 << 22)
        ids = client.enroll((keys / "devices.json").read_bytes())["ids"]
        for artifact in artifacts.values():
            client.upload_artifact(artifact.data, media_type=artifact.media_type)
        digest = client.register_release(envelope.read_bytes())
        host, port = mqtt_url.rsplit("@", 1)[1].split(":")
        fleet = Fleet(
            devices=load_enrollment(keys),
            state_root=keys / "state",
            root=read_envelope(trust.root, what="root"),
            endpoints=Endpoints(host, int(port), local.device_http_base),
            clock=lambda: datetime.now(UTC),
        )
        outcome: dict[str, bool] = {}
        runner = threading.Thread(
            target=lambda: outcome.setdefault(
                "ok", asyncio.run(fleet.run(until=lambda v: v.healthy_on(digest) == devices,
                                            timeout=600))
            )
        )  # fmt: skip
        runner.start()
        time.sleep(2.0)  # let every device connect and report idle first
        started = time.perf_counter()
        client.assign(digest, ids)
        runner.join()
        devices_done = time.perf_counter() - started
        while sum(1 for d in client.devices() if d["state"] == "healthy" and
                  d["running_release"] == digest) < devices:  # fmt: skip
            time.sleep(0.2)
        server_done = time.perf_counter() - started
    if not outcome.get("ok"):
        raise RuntimeError("the fleet did not converge")
    return devices / devices_done, devices / server_done


def main() -> None:
    devices = size_argument(__doc__, "devices", int, 1000)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * devices + 256)), hard))
    with tempfile.TemporaryDirectory() as tmp, running_mosquitto(Path(tmp) / "broker") as broker:
        raw = broker_round_trip_rate(broker.host, broker.port)
        print(f"broker round trip (paho → mosquitto → paho, QoS 1): {raw:,.0f} msg/s")
        url = f"mqtt://fleet-server@{broker.host}:{broker.port}"
        device_view, server_view = delivery_rate(Path(tmp), url, devices)
    print(f"{devices} devices: {device_view:,.1f} devices/s updated (device view)")
    print(f"{devices} devices: {server_view:,.1f} devices/s recorded healthy by the server")
    print(f"ratio: one device update costs {raw / server_view:,.1f} raw broker round trips")


if __name__ == "__main__":
    main()
