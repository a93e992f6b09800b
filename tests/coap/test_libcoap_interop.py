"""Interop with libcoap's command-line client (``coap-client-notls``, a C implementation)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest

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


def test_libcoap_without_oscore_gets_4_01_for_an_enrolled_and_an_unknown_device(
    coap_world: CoapWorld,
) -> None:
    """Debian's libcoap has no OSCORE: it reaches artifacts (above), never a device's
    manifest, and cannot tell an enrolled id from one that is not."""
    assert COAP_CLIENT is not None
    coap_world.assign(coap_world.release("1.0.0"))
    answers = []
    for device_id in (DEVICE_ID, "never-enrolled"):
        result = subprocess.run(
            [COAP_CLIENT, "-B", "5", _uri(coap_world, f"/m/{device_id}")],
            capture_output=True,
            timeout=30,
            check=False,
        )
        answers.append(result.stdout + result.stderr)
    print(f"coap-client-notls GET /m: {answers}")
    assert answers[0] == answers[1]
    assert b"4.01" in answers[0]


def _eventually(check: object, *, timeout: float) -> bool:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())
