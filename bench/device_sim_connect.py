"""How long N simulated devices take to connect to Mosquitto on one asyncio loop.

    python -m bench.device_sim_connect [N]

Starts a Mosquitto with the dev config on a free port, connects N ``DeviceLink``s
(MQTT 5, username = client id, will, ``online`` retained, ``desired`` subscribed) and
prints the time until every CONNACK arrived and until every ``online`` was acknowledged.
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from pathlib import Path

from bench.arguments import size_argument
from device_sim.mqtt_link import DeviceLink, MqttHub
from fleet.transports.embedded_broker import running_mosquitto


async def connect_fleet(host: str, port: int, count: int) -> None:
    hub = MqttHub()
    links = [
        DeviceLink(hub, device_id=f"bench-{i:05d}", host=host, port=port, on_desired=lambda _: None)
        for i in range(count)
    ]
    started = time.perf_counter()
    await asyncio.gather(*(link.connect() for link in links))
    connected = time.perf_counter() - started
    print(f"{count} devices: all CONNACKs after {connected:.2f} s ({count / connected:.0f}/s)")
    started = time.perf_counter()
    await asyncio.gather(*(link.close() for link in links))
    closed = time.perf_counter() - started
    print(f"{count} devices: clean disconnect (offline published) in {closed:.2f} s")
    await hub.aclose()


def main() -> None:
    count = size_argument(__doc__, "count", int, 1000)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * count + 256)), hard))
    with tempfile.TemporaryDirectory() as tmp, running_mosquitto(Path(tmp)) as broker:
        asyncio.run(connect_fleet(broker.host, broker.port, count))


if __name__ == "__main__":
    main()
