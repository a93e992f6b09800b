"""A small real model shipped with the package, for ``fleet demo`` and the end-to-end tests.

``data/gesture/`` is the bundle ``fleet model train --task gesture --seed 0`` wrote: a
5,584-byte fully int8 Conv1D gesture classifier (99.7 % int8 accuracy on its reference
set), its thresholds component, model card and reference histograms. Reading it needs
neither TensorFlow nor LiteRT, so the server-side demo can ship it as a release.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from fleet.domain.model_card import ModelCard, TensorSpec
from schemas import FirmwareDeclaration, TensorDeclaration

__all__ = [
    "PACKAGED_BUNDLE",
    "firmware_for",
    "packaged_card",
    "packaged_model",
    "packaged_reference",
    "packaged_thresholds",
]

PACKAGED_BUNDLE: Traversable = files("fleet.toolkit") / "data" / "gesture"
# fleet.toolkit.bundle's file names; importing it would load LiteRT.
MODEL_FILE, THRESHOLDS_FILE = "model.tflite", "thresholds.json"
CARD_FILE, REFERENCE_FILE = "model_card.json", "reference.json"
# A firmware's static RAM besides the tensor arena: stacks, heap, .data and .bss.
FIRMWARE_RAM = 48 * 1024


def packaged_model() -> bytes:
    return (PACKAGED_BUNDLE / MODEL_FILE).read_bytes()


def packaged_thresholds() -> bytes:
    return (PACKAGED_BUNDLE / THRESHOLDS_FILE).read_bytes()


def packaged_reference() -> bytes:
    return (PACKAGED_BUNDLE / REFERENCE_FILE).read_bytes()


def packaged_card() -> ModelCard:
    return ModelCard.model_validate_json((PACKAGED_BUNDLE / CARD_FILE).read_bytes())


def firmware_for(card: ModelCard, *, ram_bytes: int = FIRMWARE_RAM) -> FirmwareDeclaration:
    """A firmware declaration that fits ``card``: its ops and its exact tensor contract."""
    return FirmwareDeclaration(
        builtin_ops=card.builtin_ops,
        custom_ops=card.custom_ops,
        ram_bytes=ram_bytes,
        inputs=tuple(_declared(spec) for spec in card.inputs),
        outputs=tuple(_declared(spec) for spec in card.outputs),
    )


def _declared(spec: TensorSpec) -> TensorDeclaration:
    quantization = spec.quantization
    per_tensor = quantization is not None and len(quantization.scale) == 1
    return TensorDeclaration(
        shape=spec.shape,
        dtype=spec.dtype,
        scale=quantization.scale[0] if quantization and per_tensor else None,
        zero_point=quantization.zero_point[0] if quantization and per_tensor else None,
    )
