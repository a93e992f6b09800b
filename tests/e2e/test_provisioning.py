"""Provisioning bundles end to end: ``fleet device provision`` writes one, ``fleet-sim
unpack`` turns it into a device, and the device converges on a release over a broker
that checks every login (Mosquitto's dynamic security plugin)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code

from device_sim.coap_keys import client_context
from fleet.client import AdminClient, ApiError
from fleet.local_setup import LocalServer, Trust, run_tool
from fleet.transports.embedded_broker import Broker, find_dynsec_plugin, find_mosquitto
from schemas import Delivery
from schemas.oscore import OscoreKeys
from schemas.provisioning import ProvisioningBundle
from signer.keys import SigningKey, save_signing_key
from tests.e2e.fleet_run import DEVICE_CLASS, eventually, fleet_for, run_until
from tests.e2e.test_mqtt_delivery import register_signed_release

pytestmark = pytest.mark.skipif(
    find_mosquitto() is None or find_dynsec_plugin() is None,
    reason="mosquitto with its dynamic security plugin is not installed",
)


async def _protected_manifest(server: LocalServer, keys: OscoreKeys, state: Path) -> bytes:
    assert server.coap_url is not None
    context = await client_context(server.coap_url, keys, device_id="dev-line-1", state_dir=state)
    try:
        request = Message(code=Code.GET, uri=f"{server.coap_url}/m/dev-line-1")
        response = await context.request(request).response
    finally:
        await context.shutdown()
    assert response.code == Code.CONTENT, response
    return bytes(response.payload)


def test_a_device_started_from_its_bundle_converges_on_a_release(
    server: LocalServer, dynsec_broker: Broker, trust: Trust, tmp_path: Path
) -> None:
    calibration = os.urandom(700)
    (tmp_path / "calibration.bin").write_bytes(calibration)
    own_key = SigningKey.generate()
    save_signing_key(own_key, tmp_path / "own.key")
    with AdminClient(server.base_url, server.admin_token) as admin:
        admin.create_device_class(DEVICE_CLASS, ram_bytes=262_144, flash_bytes=1_048_576)
        api = ("--url", server.base_url, "--token", server.admin_token)
        run_tool(
            "fleet", "device", "provision", "dev-line-1", "--class", DEVICE_CLASS,
            "--tag", "line:a", "--calibration", tmp_path / "calibration.bin",
            "--out", tmp_path / "dev-line-1.json", *api,
        )  # fmt: skip
        run_tool(
            "fleet", "device", "provision", "dev-line-2", "--class", DEVICE_CLASS,
            "--public-key", tmp_path / "own.key.pub", "--out", tmp_path / "dev-line-2.json",
            *api,
        )  # fmt: skip
        bundle_path = tmp_path / "dev-line-1.json"
        assert bundle_path.stat().st_mode & 0o777 == 0o600
        bundle = ProvisioningBundle.model_validate_json(bundle_path.read_bytes())
        assert (bundle.device_id, bundle.tags, bundle.broker.url) == (
            "dev-line-1", ("line:a",), dynsec_broker.url
        )  # fmt: skip
        assert bundle.private_key_pem is not None and bundle.broker.password is not None
        assert bundle.root.to_bytes() == trust.root.read_bytes().strip()
        assert bundle.calibration is not None
        assert base64.b64decode(bundle.calibration.data_base64) == calibration
        stored = admin.call("GET", "/devices/dev-line-1/calibration")
        assert (stored["version"], stored["sha256"]) == (
            1, hashlib.sha256(calibration).hexdigest()
        )  # fmt: skip
        made_on_device = json.loads((tmp_path / "dev-line-2.json").read_text())
        assert made_on_device["private_key_pem"] is None
        assert made_on_device["public_key"] == own_key.public.public
        with pytest.raises(ApiError) as again:
            admin.call("POST", "/devices/dev-line-1/provision", json={"device_class": DEVICE_CLASS})
        assert (again.value.status, again.value.code) == (409, "conflict")

        devices = tmp_path / "line"
        run_tool("fleet-sim", "unpack", bundle_path, "--out", devices)
        digest = register_signed_release(admin, trust, tmp_path / "release", "1.0.0")
        admin.assign(digest, ["dev-line-1"])
        fleet = fleet_for(dynsec_broker.url, server.base_url, devices, devices / "root.json")
        reached = run_until(fleet, lambda v: v.healthy_on(digest) == 1, timeout=60)
        assert reached, fleet.view.counts()
        assert eventually(
            lambda: admin.device("dev-line-1")["running_release"] == digest, timeout=15
        )

        # The bundle's OSCORE keys went with the device; new ones, from the CLI, replace them.
        assert bundle.coap_keys is not None
        assert (devices / "coap-keys.json").stat().st_mode & 0o777 == 0o600
        run_tool("fleet", "device", "coap-keys", "dev-line-1", "--out", tmp_path / "k.json", *api)
        assert (tmp_path / "k.json").stat().st_mode & 0o777 == 0o600
        renewed = OscoreKeys.model_validate_json((tmp_path / "k.json").read_bytes())
        assert renewed.device_kid != bundle.coap_keys.device_kid
        manifest = asyncio.run(_protected_manifest(server, renewed, tmp_path / "coap"))
        assert digest in {
            hashlib.sha256(
                Delivery.model_validate_json(manifest).release.payload_bytes()
            ).hexdigest()
        }
