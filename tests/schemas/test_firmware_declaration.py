"""The firmware declaration on a release's firmware component: optional, absent when
unset (so older releases keep their bytes), and only on the firmware component."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import Component, FirmwareDeclaration, ReleaseManifest, TensorDeclaration
from schemas.canonical import model_bytes

FIRMWARE: dict[str, Any] = {
    "kind": "firmware",
    "name": "app",
    "version": "1.2.0",
    "security_version": 3,
    "sha256": "ab" * 32,
    "length": 16,
    "media_type": "application/octet-stream",
}
DECLARATION = FirmwareDeclaration(
    builtin_ops=("CONV_2D", "SOFTMAX"),
    ram_bytes=49_152,
    inputs=(TensorDeclaration(shape=(1, 49, 10, 1), dtype="INT8", scale=0.5, zero_point=-128),),
)


def release(component: Component) -> ReleaseManifest:
    return ReleaseManifest(
        name="r",
        version="1",
        device_class="c",
        created=datetime(2026, 2, 1, tzinfo=UTC),
        components=(component,),
    )


def test_an_absent_declaration_is_left_out_of_the_signed_bytes() -> None:
    payload = json.loads(model_bytes(release(Component(**FIRMWARE))))
    assert "firmware" not in payload["components"][0]


def test_a_declaration_round_trips_through_strict_json() -> None:
    manifest = release(Component(**FIRMWARE, firmware=DECLARATION))
    again = ReleaseManifest.model_validate_json(model_bytes(manifest), strict=True)
    assert again == manifest
    assert again.components[0].firmware == DECLARATION


def test_only_the_firmware_component_carries_a_declaration() -> None:
    with pytest.raises(ValidationError, match="only a firmware component"):
        Component(**{**FIRMWARE, "kind": "model"}, firmware=DECLARATION)


@pytest.mark.parametrize(
    "change",
    [
        {"builtin_ops": ["CONV 2D"]},
        {"ram_bytes": -1},
        {"inputs": [{"shape": [0], "dtype": "INT8"}]},
        {"inputs": [{"shape": [1], "dtype": "int8"}]},
        {"inputs": [{"shape": [1], "dtype": "INT8", "scale": 0}]},
        {"colour": "red"},
    ],
)
def test_a_bad_declaration_is_refused(change: dict[str, Any]) -> None:
    fields = {"builtin_ops": ["CONV_2D"], "ram_bytes": 1024, **change}
    with pytest.raises(ValidationError):
        FirmwareDeclaration.model_validate_json(json.dumps(fields), strict=True)
