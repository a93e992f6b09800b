"""The model shipped as package data is a real, self-consistent int8 bundle, and the
firmware declaration made for it passes the release checks the server runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.domain.compatibility import check_release
from fleet.domain.model_card import NumericKind
from fleet.domain.records import DeviceClass
from fleet.inspection import inspect_model
from fleet.services.release_fit import firmware_profile
from fleet.toolkit.packaged import PACKAGED_BUNDLE, firmware_for, packaged_card, packaged_model
from schemas import Component, ComponentKind

DEMO_CLASS = DeviceClass("nrf52840-kws", ram_bytes=256 * 1024, flash_bytes=1 << 20)


def test_the_packaged_card_is_what_inspection_reads() -> None:
    card = inspect_model(packaged_model())
    assert card == packaged_card()
    assert card.numeric_kind is NumericKind.INTEGER
    assert card.flash_bytes < 8 * 1024


def test_the_packaged_bundle_reads_back_as_one_bundle() -> None:
    pytest.importorskip("ai_edge_litert")
    from fleet.toolkit.bundle import read_bundle

    bundle = read_bundle(Path(str(PACKAGED_BUNDLE)))
    assert bundle.model == packaged_model()


def test_the_declaration_made_for_the_model_fits_the_demo_class() -> None:
    card = packaged_card()
    firmware = Component(
        kind=ComponentKind.FIRMWARE,
        name="fw",
        version="2.1.0",
        security_version=1,
        sha256="0" * 64,
        length=48 * 1024,
        media_type="application/octet-stream",
        firmware=firmware_for(card),
    )
    profile = firmware_profile(firmware, card)
    assert check_release(DEMO_CLASS, profile, card, thresholds_bytes=2048) == ()
    assert profile.inputs is not None and profile.inputs[0].shape == (1, 128, 3)
