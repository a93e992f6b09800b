"""Release gating: a model must fit its firmware's resolver, RAM, flash and tensor contract."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from tflite.BuiltinOperator import BuiltinOperator

from fleet.domain.compatibility import (
    FirmwareProfile,
    FlashExceeded,
    MissingOps,
    RamExceeded,
    TensorContract,
    TensorContractMismatch,
    UnsupportedOps,
    ViolationCode,
    check_release,
)
from fleet.domain.model_card import ModelCard
from fleet.inspection import inspect_model
from tests.fleet.tflite_builder import INT32, Graph, Op, T, build, tiny_classifier


@dataclass(frozen=True)
class DeviceClass:
    name: str
    ram_bytes: int
    flash_bytes: int
    supported_ops: frozenset[str] = frozenset()


NRF52 = DeviceClass("nrf52840", ram_bytes=256 * 1024, flash_bytes=1024 * 1024)
FIRMWARE = FirmwareProfile(
    version="2.4.0",
    builtin_ops=frozenset({"CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "RESHAPE"}),
    custom_ops=frozenset(),
    ram_bytes=48 * 1024,
    image_bytes=300 * 1024,
    inputs=(TensorContract(shape=(1, 8), dtype="INT8", scale=0.05, zero_point=-3),),
)


@pytest.fixture(scope="module")
def classifier() -> ModelCard:
    return inspect_model(build(tiny_classifier()))


@pytest.fixture(scope="module")
def camera_model() -> ModelCard:
    """96x96 RGB in, a 16-channel convolution: ~170 KiB of activations."""
    graph = Graph(
        tensors=[
            T("image", [1, 96, 96, 3], quant=(1 / 255, -128)),
            T("filters", [16, 3, 3, 3], data=bytes(432), quant=(0.02, 0)),
            T("bias", [16], dtype=INT32, data=bytes(64), quant=(0.0002, 0)),
            T("features", [1, 96, 96, 16], quant=(0.05, -128)),
        ],
        operators=[Op(0, [0, 1, 2], [3])],
        inputs=[0],
        outputs=[3],
        opcodes=[(BuiltinOperator.CONV_2D, None)],
    )
    return inspect_model(build(graph))


def test_a_fitting_release_passes(classifier: ModelCard) -> None:
    assert check_release(NRF52, FIRMWARE, classifier, thresholds_bytes=2048) == ()


def test_refuses_a_model_whose_arena_and_firmware_overflow_ram(camera_model: ModelCard) -> None:
    small = replace(NRF52, ram_bytes=192 * 1024)
    firmware = replace(FIRMWARE, inputs=None)
    (violation,) = check_release(small, firmware, camera_model, thresholds_bytes=0)
    assert isinstance(violation, RamExceeded)
    arena = camera_model.arena
    need = arena.total + 48 * 1024
    assert arena.head >= 96 * 96 * (3 + 16)
    numbers = (arena.total, arena.head, arena.prepare_peak, arena.tail_margin, 49_152, need)
    for number in (*numbers, 196_608):
        assert f"{number:,}" in violation.message
    assert f"by {need - 196_608:,} B" in violation.message
    assert violation.code == ViolationCode.RAM_EXCEEDED


def test_refuses_a_model_using_an_op_the_resolver_lacks(classifier: ModelCard) -> None:
    firmware = replace(FIRMWARE, builtin_ops=frozenset({"FULLY_CONNECTED", "RESHAPE"}))
    (violation,) = check_release(NRF52, firmware, classifier, thresholds_bytes=0)
    assert isinstance(violation, MissingOps)
    assert violation.ops == ("SOFTMAX",)
    assert "SOFTMAX" in violation.message
    assert "2.4.0" in violation.message


def test_custom_ops_are_resolved_by_their_custom_code() -> None:
    graph = tiny_classifier()
    graph.opcodes[1] = (BuiltinOperator.CUSTOM, "VibrationFeatures")
    card = inspect_model(build(graph))
    assert card.custom_ops == ("VibrationFeatures",)
    (violation,) = check_release(NRF52, FIRMWARE, card, thresholds_bytes=0)
    assert "custom 'VibrationFeatures'" in violation.message
    resolving = replace(FIRMWARE, custom_ops=frozenset({"VibrationFeatures"}))
    assert check_release(NRF52, resolving, card, thresholds_bytes=0) == ()


def test_refuses_ops_the_device_class_does_not_support(classifier: ModelCard) -> None:
    picky = replace(NRF52, supported_ops=frozenset({"FULLY_CONNECTED"}))
    (violation,) = check_release(picky, FIRMWARE, classifier, thresholds_bytes=0)
    assert isinstance(violation, UnsupportedOps)
    assert "SOFTMAX" in violation.message
    assert "'nrf52840'" in violation.message


def test_refuses_images_that_overflow_flash(classifier: ModelCard) -> None:
    firmware = replace(FIRMWARE, image_bytes=1_000_000)
    (violation,) = check_release(NRF52, firmware, classifier, thresholds_bytes=60_000)
    assert isinstance(violation, FlashExceeded)
    need = 1_000_000 + classifier.flash_bytes + 60_000
    for number in (1_000_000, classifier.flash_bytes, 60_000, need, 1_048_576):
        assert f"{number:,}" in violation.message


def test_refuses_an_input_contract_the_firmware_does_not_expect(classifier: ModelCard) -> None:
    expects = (TensorContract(shape=(1, 128, 3), dtype="INT8", scale=0.1, zero_point=0),)
    firmware = replace(FIRMWARE, inputs=expects)
    violations = check_release(NRF52, firmware, classifier, thresholds_bytes=0)
    mismatches = [v for v in violations if isinstance(v, TensorContractMismatch)]
    assert len(mismatches) == len(violations)
    by_field = {v.field: v.message for v in mismatches}
    assert set(by_field) == {"shape", "scale", "zero_point"}
    assert "[1, 128, 3]" in by_field["shape"]
    assert "[1, 8]" in by_field["shape"]
    assert "input 0 ('input')" in by_field["shape"]


def test_refuses_a_different_number_of_outputs(classifier: ModelCard) -> None:
    firmware = replace(FIRMWARE, outputs=())
    (violation,) = check_release(NRF52, firmware, classifier, thresholds_bytes=0)
    assert violation.message == "outputs count: the firmware expects 0, the model has 1"


def test_reports_every_violation_at_once(camera_model: ModelCard) -> None:
    tight = DeviceClass("tiny", ram_bytes=64 * 1024, flash_bytes=256 * 1024)
    firmware = replace(FIRMWARE, builtin_ops=frozenset({"FULLY_CONNECTED"}))
    codes = [v.code for v in check_release(tight, firmware, camera_model, thresholds_bytes=0)]
    assert codes == [
        ViolationCode.MISSING_OPS,
        ViolationCode.RAM_EXCEEDED,
        ViolationCode.FLASH_EXCEEDED,
        ViolationCode.TENSOR_CONTRACT,
        ViolationCode.TENSOR_CONTRACT,
        ViolationCode.TENSOR_CONTRACT,
    ]


def test_model_card_round_trips_through_json(classifier: ModelCard) -> None:
    assert ModelCard.model_validate_json(classifier.model_dump_json()) == classifier
