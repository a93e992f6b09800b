"""What the server learned from a ``.tflite`` model: pure, immutable, serialisable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.common import Count, Digest, PositiveCount, SafeInt

__all__ = [
    "ArenaEstimate",
    "ModelCard",
    "ModelReference",
    "NumericKind",
    "Quantization",
    "ReferenceHistogram",
    "StoredModel",
    "TensorSpec",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quantization(_Frozen):
    """Affine quantisation: ``real = scale * (q - zero_point)``, per tensor or per axis."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    quantized_dimension: int = 0

    @model_validator(mode="after")
    def _same_length(self) -> Self:
        if len(self.scale) != len(self.zero_point):
            raise ValueError(f"{len(self.scale)} scales but {len(self.zero_point)} zero points")
        return self


class TensorSpec(_Frozen):
    name: str
    shape: tuple[int, ...] = Field(description="the shape TFLM plans and runs, e.g. [1, 49, 10, 1]")
    shape_signature: tuple[int, ...] = Field(
        description="the shape as exported, -1 where it was left open (e.g. a Keras Input "
        "without batch size: [-1, 49, 10, 1]); TFLM does not read it"
    )
    dtype: str = Field(description="TFLite TensorType name, e.g. INT8, FLOAT32")
    quantization: Quantization | None = None


class ArenaEstimate(_Frozen):
    """TFLM tensor-arena need, in bytes (``fleet.domain.arena``).

    The head region holds first the temporaries of kernels' Prepare and of memory
    planning (``prepare_peak``), then the planned activations and scratch buffers
    (``head``); the tail holds persistent structures. ``total`` is what a device's arena
    must have: never below TFLM's real minimum, a little above it.
    """

    head: int = Field(ge=0, description="greedy memory plan of activations and scratch buffers")
    prepare_peak: int = Field(
        ge=0, description="largest head use before the plan: Prepare or planning temporaries"
    )
    tail_margin: int = Field(ge=0, description="persistent structures, upper bound")
    total: int = Field(ge=0)

    @model_validator(mode="after")
    def _total_adds_up(self) -> Self:
        expected = max(self.head, self.prepare_peak) + self.tail_margin
        if self.total != expected:
            raise ValueError(
                f"total {self.total} != max(head {self.head}, prepare {self.prepare_peak})"
                f" + tail {self.tail_margin}"
            )
        return self


class NumericKind(StrEnum):
    INTEGER = "integer"  # no float tensor at all: what an int8 MCU build wants
    FLOAT = "float"  # float tensors and no quantised (int4/int8/uint8/int16) tensor
    MIXED = "mixed"  # quantised tensors and float ones (listed in float_tensors)


class ModelCard(_Frozen):
    schema_version: int
    flash_bytes: int = Field(ge=0, description="the .tflite file's length")
    builtin_ops: tuple[str, ...] = Field(description="sorted BuiltinOperator names")
    custom_ops: tuple[str, ...] = Field(description="sorted custom_code names")
    operator_count: int = Field(ge=0)
    tensor_count: int = Field(ge=0)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    numeric_kind: NumericKind
    float_tensors: tuple[str, ...] = Field(description="names of float tensors, in order")
    arena: ArenaEstimate


class ReferenceHistogram(_Frozen):
    # JSON-safe integers (the API's strict reader refuses larger ones): the schema says so.
    counts: tuple[Count, ...]
    proportions: tuple[float, ...] = Field(description="counts / reference size")


class ModelReference(_Frozen):
    """The reference set and what the int8 model made of it: the drift baseline.

    Histograms are named as in a telemetry report: the input summaries, ``confidence``
    or ``score``, and ``predicted``; their bin edges are the thresholds component's.
    The toolkit writes it as a bundle's ``reference.json`` and registers it with the model.
    """

    task: str
    seed: SafeInt = Field(
        description="reference windows: sensors.split(task, REFERENCE, size, seed)"
    )
    size: PositiveCount
    model_sha256: Digest
    float_accuracy: float
    int8_accuracy: float
    histograms: dict[str, ReferenceHistogram] = Field(max_length=64)


@dataclass(frozen=True)
class StoredModel:
    """A model version the server has inspected: its card and, once registered, reference."""

    sha256: str
    card: ModelCard
    created_at: datetime
    reference: ModelReference | None = None
