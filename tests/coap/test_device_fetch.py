"""The simulated device's CoAP fetcher: Block2 downloads that resume, and refuse lies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from device_sim.coap_keys import client_context
from device_sim.coap_link import CoapArtifactFetcher
from device_sim.errors import ArtifactUnavailable
from device_sim.flash import ArtifactRef
from device_sim.fleet import DeviceSpec, with_coap_share
from schemas.oscore import OscoreKeys
from signer.errors import ArtifactRefusal
from tests.coap.conftest import DEVICE_ID, CoapWorld


@pytest.fixture(params=["plain", "oscore"])
async def context(
    request: pytest.FixtureRequest, coap_world: CoapWorld, tmp_path: Path
) -> AsyncIterator[Any]:
    """Artifacts are public, and a device with keys fetches them protected as well."""
    keys = None
    if request.param == "oscore":
        keys = OscoreKeys.model_validate(coap_world.client.new_coap_keys(DEVICE_ID))
    client = await client_context(
        coap_world.local.coap_url, keys, device_id=DEVICE_ID, state_dir=tmp_path, fsync=False
    )
    yield client
    await client.shutdown()


def _ref(world: CoapWorld, length: int | None = None) -> ArtifactRef:
    return ArtifactRef("firmware", world.artifact_sha256, length or len(world.artifact))


async def test_a_download_resumes_at_the_first_missing_block(
    coap_world: CoapWorld, context: Any, tmp_path: Path
) -> None:
    dest = tmp_path / "firmware"
    part = tmp_path / "firmware.part"
    part.write_bytes(coap_world.artifact[: 700 * 1024 + 100])  # a torn last block
    fetcher = CoapArtifactFetcher(context, coap_world.local.coap_url)
    await fetcher.fetch(_ref(coap_world), dest)
    assert fetcher.resumed == 1
    assert dest.read_bytes() == coap_world.artifact
    assert not part.exists()


async def test_bytes_past_the_declared_length_are_refused(
    coap_world: CoapWorld, context: Any, tmp_path: Path
) -> None:
    fetcher = CoapArtifactFetcher(context, coap_world.local.coap_url)
    with pytest.raises(ArtifactRefusal):
        await fetcher.fetch(_ref(coap_world, length=5000), tmp_path / "firmware")
    assert not (tmp_path / "firmware.part").exists()


async def test_an_artifact_the_server_lacks_is_unavailable(
    coap_world: CoapWorld, context: Any, tmp_path: Path
) -> None:
    fetcher = CoapArtifactFetcher(context, coap_world.local.coap_url)
    with pytest.raises(ArtifactUnavailable):
        await fetcher.fetch(ArtifactRef("model", "ab" * 32, 10), tmp_path / "model")


def test_the_coap_share_is_spread_evenly_over_the_fleet() -> None:
    specs = [DeviceSpec(f"d{i}", "c", Path(f"d{i}.key")) for i in range(10)]
    transports = [spec.transport for spec in with_coap_share(specs, 0.3)]
    assert transports.count("coap") == 3
    assert transports[:4] != ["coap"] * 3 + ["mqtt"]  # spread, not the first three
    assert {s.transport for s in with_coap_share(specs, 0.0)} == {"mqtt"}
    assert {s.transport for s in with_coap_share(specs, 1.0)} == {"coap"}
