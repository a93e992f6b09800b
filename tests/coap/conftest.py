"""A server with CoAP on a free port, one enrolled device and two signed releases."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from device_sim.fleet import ENROLLMENT, EnrollmentEntry
from fleet.client import AdminClient
from fleet.local_setup import (
    ArtifactFile,
    LocalServer,
    Trust,
    create_trust,
    running_server,
    sign_release,
)
from signer.keys import SigningKey

DEVICE_CLASS = "nrf52840-kws"
DEVICE_ID = "coap-dev-1"


@dataclass
class CoapWorld:
    local: LocalServer
    client: AdminClient
    trust: Trust
    directory: Path
    device_key: SigningKey
    artifact: bytes
    artifact_sha256: str

    @property
    def host_port(self) -> tuple[str, int]:
        coap = self.local.server.coap
        assert coap is not None
        return coap.host, coap.port

    def published(self) -> float:
        """Director manifests the outbox pump has published (and notified) so far."""
        text = httpx.get(f"{self.local.base_url}/metrics", timeout=5).text
        name = "fleet_director_manifests_published_total "
        return sum(float(line[len(name) :]) for line in text.splitlines() if line.startswith(name))

    def assign(self, digest: str) -> None:
        """Assign a release to the device and wait until its manifest was published."""
        before = self.published()
        self.client.assign(digest, [DEVICE_ID])
        deadline = time.monotonic() + 10
        while self.published() == before:
            assert time.monotonic() < deadline, "the outbox pump did not publish"
            time.sleep(0.05)

    def release(self, version: str) -> str:
        """Sign and register a release of the small test artifact; its digest."""
        artifacts = {
            "firmware.bin": ArtifactFile(
                "firmware", "kws-fw", version, 1, "application/octet-stream", self.artifact
            )
        }
        envelope = sign_release(
            self.trust,
            self.directory / f"release-{version}",
            name="kws",
            version=version,
            device_class=DEVICE_CLASS,
            artifacts=artifacts,
        )
        return self.client.register_release(envelope.read_bytes())


@pytest.fixture(scope="package")
def coap_trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    return create_trust(tmp_path_factory.mktemp("trust"))


@pytest.fixture(scope="package")
def coap_world(tmp_path_factory: pytest.TempPathFactory, coap_trust: Trust) -> Iterator[CoapWorld]:
    directory = tmp_path_factory.mktemp("coap")
    trust = coap_trust
    key = SigningKey.generate()
    enrollment = ENROLLMENT.dump_json(
        [EnrollmentEntry(id=DEVICE_ID, device_class=DEVICE_CLASS, public_key=key.public.public)]
    )
    artifact = os.urandom((1 << 20) + 4321)  # over 1 MiB, not a whole number of blocks
    with (
        running_server(trust, directory / "server") as local,
        AdminClient(local.base_url, local.admin_token) as client,
    ):
        client.create_device_class(DEVICE_CLASS, ram_bytes=256 * 1024, flash_bytes=4 << 20)
        client.enroll(enrollment)
        sha256 = client.upload_artifact(artifact, media_type="application/octet-stream")
        yield CoapWorld(local, client, trust, directory, key, artifact, sha256)
