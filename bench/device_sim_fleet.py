"""How long N simulated devices take to converge on a new release, end to end.

    python -m bench.device_sim_fleet [N] [--state DIR] [FAULT=P ...]

Starts a Mosquitto (dev config) and an artifact server in another process, enrolls N
device keys, publishes a signed Delivery to each device's retained ``desired`` topic, then
runs the fleet in this process until every device reports ``healthy`` on the release.
Prints the wall and CPU time and, per status state, when the first, median and last
device reported it. Device state lives in a temp directory under ``--state`` (default the
system temp directory; a tmpfs such as /dev/shm removes the disk from the measurement).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.arguments import parser_for
from device_sim.cli import app
from device_sim.faults import Faults
from device_sim.fleet import Endpoints, Fleet, load_enrollment
from fleet.transports.embedded_broker import running_mosquitto
from tests.device_sim.director import Director, ServerClient
from tests.support.artifact_server import ArtifactServer


def _serve(blobs: list[bytes], urls: Any, stop: Any) -> None:
    with ArtifactServer() as server:
        for blob in blobs:
            server.add(blob)
        urls.put(server.base_url)
        stop.wait()


def _timeline(seen: dict[str, list[float]]) -> None:
    for state, moments in seen.items():
        moments.sort()
        print(
            f"  {state:12s} {len(moments):6d} reports   first {moments[0]:6.2f} s"
            f"   median {moments[len(moments) // 2]:6.2f} s   last {moments[-1]:6.2f} s"
        )


def main() -> None:
    parser = parser_for(__doc__)
    parser.add_argument("devices", type=int, nargs="?", default=50)
    parser.add_argument("faults", nargs="*")
    parser.add_argument("--state", default=None)
    args = parser.parse_args()
    count = args.devices
    with (
        tempfile.TemporaryDirectory(dir=args.state) as tmp,
        running_mosquitto(Path(tmp) / "mosquitto") as broker,
    ):
        director = Director(now=datetime.now(UTC))
        release = director.release("2.0.0", security_version=2, size=64 * 1024)
        urls: Any = multiprocessing.Queue()
        stop = multiprocessing.Event()
        blobs = list(release.blobs.values())
        server_process = multiprocessing.Process(target=_serve, args=(blobs, urls, stop))
        server_process.start()
        keys = Path(tmp) / "keys"
        app(
            ["keys", "--devices", str(count), "--out", str(keys), "--class", "nrf52840-kws"],
            standalone_mode=False,
        )
        server = ServerClient(broker)
        specs = load_enrollment(keys)
        for spec in specs:
            server.publish_desired(spec.device_id, director.delivery(spec.device_id, release))
        fleet = Fleet(
            devices=specs,
            state_root=Path(tmp) / "state",
            root=director.root,
            endpoints=Endpoints(broker.host, broker.port, urls.get(timeout=10)),
            clock=lambda: datetime.now(UTC),
            faults=Faults.parse(args.faults),
        )
        seen: dict[str, list[float]] = {}
        fleet.observers.append(
            lambda report: seen.setdefault(report.state.value, []).append(
                time.monotonic() - started
            )
        )
        started, cpu = time.monotonic(), time.process_time()
        reached = asyncio.run(
            fleet.run(until=lambda v: v.healthy_on(release.digest) == count, timeout=300)
        )
        print(
            f"{count} devices: {'converged' if reached else 'NOT converged'} in "
            f"{time.monotonic() - started:.1f} s wall, {time.process_time() - cpu:.1f} s CPU;"
            f" {dict(fleet.view.counts())}"
        )
        _timeline(seen)
        server.close()
        stop.set()
        server_process.join()


if __name__ == "__main__":
    main()
