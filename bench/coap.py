"""Artifact download throughput over CoAP (Block2) next to the same bytes over HTTP.

    python -m bench.coap [MEBIBYTES]        (default 4)

A server (SQLite, in-process, CoAP on a free UDP port) stores one random artifact; the
same bytes are then downloaded, one download at a time, by:

1. HTTP: ``httpx`` streaming ``GET /api/v1/artifacts/{sha256}`` (one response);
2. CoAP, aiocoap: ``CoapArtifactFetcher``, the simulated device's fetcher: one
   confirmable ``GET /a/{sha256}`` per 1,024-byte block, stop-and-wait (NSTART = 1);
3. CoAP, libcoap: ``coap-client-notls -b 1024`` (C, a separate process), if installed.

The aiocoap client shares this process (and its GIL) with the server; libcoap does not.
Every download's sha256 is checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.arguments import size_argument
from device_sim.coap_keys import client_context
from device_sim.coap_link import CoapArtifactFetcher
from device_sim.flash import ArtifactRef
from fleet.client import AdminClient
from fleet.local_setup import LocalServer, create_trust, running_server


def _timed(download: Callable[[], bytes], sha256: str) -> float:
    started = time.perf_counter()
    data = download()
    elapsed = time.perf_counter() - started
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError("downloaded bytes do not match the artifact")
    return elapsed


def _http(local: LocalServer, sha256: str) -> bytes:
    with httpx.stream("GET", f"{local.device_http_base}/artifacts/{sha256}", timeout=60) as r:
        r.raise_for_status()
        return b"".join(r.iter_bytes())


def _aiocoap(local: LocalServer, sha256: str, length: int, workdir: Path) -> bytes:
    async def fetch() -> bytes:
        context = await client_context()
        try:
            dest = workdir / "aiocoap.bin"
            dest.unlink(missing_ok=True)
            fetcher = CoapArtifactFetcher(context, local.coap_url)
            await fetcher.fetch(ArtifactRef("bench", sha256, length), dest)
            return dest.read_bytes()
        finally:
            await context.shutdown()

    return asyncio.run(fetch())


def _libcoap(local: LocalServer, sha256: str, workdir: Path) -> bytes:
    out = workdir / "libcoap.bin"
    out.unlink(missing_ok=True)
    command = ["coap-client-notls", "-b", "1024", "-o", str(out), f"{local.coap_url}/a/{sha256}"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return out.read_bytes()


def main() -> None:
    mebibytes = size_argument(__doc__, "mebibytes", float, 4.0)
    data = os.urandom(int(mebibytes * (1 << 20)))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        trust = create_trust(workdir / "trust")
        with (
            running_server(trust, workdir / "server") as local,
            AdminClient(local.base_url, local.admin_token) as admin,
        ):
            sha256 = admin.upload_artifact(data, media_type="application/octet-stream")
            runs = {
                "HTTP GET (httpx, one response)": lambda: _http(local, sha256),
                "CoAP Block2 1 KiB (aiocoap device fetcher)": lambda: _aiocoap(
                    local, sha256, len(data), workdir
                ),
            }
            if shutil.which("coap-client-notls"):
                runs["CoAP Block2 1 KiB (libcoap coap-client-notls)"] = lambda: _libcoap(
                    local, sha256, workdir
                )
            results = {name: _timed(run, sha256) for name, run in runs.items()}
    print(f"artifact: {len(data):,} bytes ({mebibytes:g} MiB), one download at a time")
    http = results["HTTP GET (httpx, one response)"]
    for name, seconds in results.items():
        rate = len(data) / seconds / (1 << 20)
        print(f"  {name:<48} {seconds:7.2f} s  {rate:8.2f} MiB/s  ({seconds / http:6.1f}x HTTP)")


if __name__ == "__main__":
    main()
