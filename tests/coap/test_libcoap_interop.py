"""Interop with libcoap's command-line client (``coap-client-notls``, a C implementation)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from schemas import Delivery
from tests.coap.conftest import DEVICE_ID, CoapWorld

COAP_CLIENT = shutil.which("coap-client-notls")
pytestmark = pytest.mark.skipif(
    COAP_CLIENT is None, reason="coap-client-notls is in libcoap3-bin (apt-get install)"
)


def _uri(world: CoapWorld, path: str) -> str:
    host, port = world.host_port
    return f"coap://{host}:{port}{path}"


def test_libcoap_downloads_a_one_mebibyte_artifact_blockwise(
    coap_world: CoapWorld, tmp_path: Path
) -> None:
    assert COAP_CLIENT is not None
    out = tmp_path / "artifact.bin"
    started = time.monotonic()
    result = subprocess.run(
        [
            COAP_CLIENT,
            "-b",
            "1024",
            "-o",
            str(out),
            _uri(coap_world, f"/a/{coap_world.artifact_sha256}"),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert len(data) == len(coap_world.artifact) >= 1 << 20
    assert hashlib.sha256(data).hexdigest() == coap_world.artifact_sha256
    print(f"coap-client-notls: {len(data)} bytes in {elapsed:.2f} s")


def test_libcoap_observes_a_manifest_and_sees_the_update(
    coap_world: CoapWorld, tmp_path: Path
) -> None:
    assert COAP_CLIENT is not None
    first = coap_world.release("1.0.0")
    coap_world.assign(first)
    out, errors = tmp_path / "notifications", tmp_path / "stderr"
    with out.open("wb") as sink, errors.open("wb") as error_sink:
        observer = subprocess.Popen(
            [COAP_CLIENT, "-s", "4", "-B", "6", "-b", "1024", _uri(coap_world, f"/m/{DEVICE_ID}")],
            stdout=sink,
            stderr=error_sink,
        )
        try:
            # "roots" is the Delivery's last key: the first one has arrived whole
            assert _eventually(lambda: b'"roots"' in out.read_bytes(), timeout=5), "no Delivery"
            second = coap_world.release("1.0.1")
            coap_world.assign(second)
            observer.wait(timeout=20)
        finally:
            if observer.poll() is None:
                observer.kill()
                observer.wait()
    assert observer.returncode == 0, errors.read_text()
    digests = _release_digests(out.read_bytes())
    assert digests[0] == first
    assert digests[-1] == second, digests


def _release_digests(output: bytes) -> list[str]:
    """Each Delivery libcoap printed (one JSON document per notification)."""
    decoder_input = output.decode().replace("}{", "}\n{")
    deliveries = [
        Delivery.model_validate_json(line) for line in decoder_input.split("\n") if line.strip()
    ]
    return [hashlib.sha256(delivery.release.payload_bytes()).hexdigest() for delivery in deliveries]


def _eventually(check: object, *, timeout: float) -> bool:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())
