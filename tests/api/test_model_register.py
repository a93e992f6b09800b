"""``fleet model register`` against a real server: the bundle's model, thresholds and
reference histograms are registered, and a release built from them is accepted."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from fleet.api.app import create_api
from fleet.domain.records import Role
from fleet.http_server import serving
from fleet.toolkit.cli import model_app
from fleet.toolkit.packaged import (
    PACKAGED_BUNDLE,
    firmware_for,
    packaged_card,
    packaged_model,
    packaged_reference,
    packaged_thresholds,
)
from schemas import Component, ComponentKind, ReleaseManifest
from tests.api.support import API, build_context, seed_tokens
from tests.signer.simulator import DEVICE_CLASS, START, KeyPool, RepositorySimulator


@pytest.fixture
def server(
    engine: Engine, tmp_path: Path, keys: KeyPool
) -> Iterator[tuple[str, str, RepositorySimulator]]:
    sim = RepositorySimulator(keys, now=START)
    context = build_context(engine, tmp_path / "blobs", sim, now=START, queued=[])
    secret = seed_tokens(context, START)[Role.OPERATOR]
    with serving(create_api(context)) as base_url:
        yield base_url, secret, sim


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    directory = tmp_path / "bundle"
    directory.mkdir()
    for name in ("model.tflite", "thresholds.json", "model_card.json", "reference.json"):
        (directory / name).write_bytes((PACKAGED_BUNDLE / name).read_bytes())
    return directory


def register(bundle: Path, base_url: str, token: str) -> Result:
    args = ["register", str(bundle), "--server", base_url, "--token", token]
    return CliRunner().invoke(model_app, args)


def test_register_uploads_the_bundle_and_its_reference(
    server: tuple[str, str, RepositorySimulator], bundle: Path
) -> None:
    base_url, token, sim = server
    result = register(bundle, base_url, token)
    assert result.exit_code == 0, result.output
    model_sha = hashlib.sha256(packaged_model()).hexdigest()
    thresholds_sha = hashlib.sha256(packaged_thresholds()).hexdigest()
    assert f"model       {model_sha}" in result.output
    assert f"thresholds  {thresholds_sha}" in result.output
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=auth) as http:
        model = http.get(f"{API}/models/{model_sha}").json()
        assert model["reference"] == json.loads(packaged_reference())
        assert model["card"] == packaged_card().model_dump(mode="json")
        http.post(
            f"{API}/device-classes",
            json={"name": DEVICE_CLASS, "ram_bytes": 64 * 1024, "flash_bytes": 1 << 20},
        )
        firmware = b"firmware image" * 100
        http.post(
            f"{API}/artifacts",
            content=firmware,
            headers={"Content-Type": "application/octet-stream"},
        )
        manifest = ReleaseManifest(
            name="gesture",
            version="1.0.0",
            device_class=DEVICE_CLASS,
            created=START,
            components=(
                _component(ComponentKind.FIRMWARE, firmware, firmware_for(packaged_card())),
                _component(ComponentKind.MODEL, packaged_model()),
                _component(ComponentKind.THRESHOLDS, packaged_thresholds()),
            ),
        )
        registered = http.post(
            f"{API}/releases",
            content=sim.sign_release(manifest).to_bytes(),
            headers={"Content-Type": "application/json"},
        )
        assert registered.status_code == 201, registered.text


def _component(kind: ComponentKind, data: bytes, firmware: object = None) -> Component:
    return Component.model_validate(
        {
            "kind": kind,
            "name": f"gesture-{kind.value}",
            "version": "1.0.0",
            "security_version": 1,
            "sha256": hashlib.sha256(data).hexdigest(),
            "length": len(data),
            "media_type": "application/octet-stream",
            "firmware": firmware,
        }
    )


def test_a_bundle_whose_files_disagree_is_refused_before_upload(
    server: tuple[str, str, RepositorySimulator], bundle: Path
) -> None:
    base_url, token, _ = server
    (bundle / "model.tflite").write_bytes(packaged_model() + b"\x00")
    result = register(bundle, base_url, token)
    assert result.exit_code == 2, result.output
    assert "thresholds.json is for model" in result.output


def test_an_unknown_token_is_refused(
    server: tuple[str, str, RepositorySimulator], bundle: Path
) -> None:
    base_url, _, _ = server
    result = register(bundle, base_url, "tf_not-a-real-token")
    assert result.exit_code == 1, result.output
    assert "401 unauthenticated" in result.output
