"""Tensor-arena maths for TensorFlow Lite Micro, as pure functions.

TFLM splits its arena in two. The *head* holds the activations, overlaid by a static
memory plan; the *tail* holds persistent structures (one ``TfLiteEvalTensor`` per
tensor, one node per operator, kernel op data such as per-channel requantisation
multipliers, the ``TfLiteTensor`` views of inputs and outputs).

- :func:`tflm_lifetimes` reproduces TFLM's allocation scopes
  (``micro_allocation_info.cc``): inputs live from scope 0, operator ``i`` runs in scope
  ``i + 1``, outputs live to the last scope.
- :func:`plan_greedy` reproduces ``GreedyMemoryPlanner``: buffers sorted largest first,
  each placed at the lowest offset that overlaps no placed buffer alive at the same time.
- :class:`TflmOverheads` states the margins taken for the tail and for kernels'
  ``Prepare`` temporaries; they are estimates, not a reproduction, because kernels
  choose their own data.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ARENA_ALIGNMENT",
    "HOST_64BIT",
    "ArenaPlan",
    "Buffer",
    "TflmOverheads",
    "align_up",
    "plan_greedy",
    "tflm_lifetimes",
]

# MicroArenaBufferAlignment(): every planned buffer's size is rounded up to this.
ARENA_ALIGNMENT = 16
# TFLM's kUninitializedLifetime: a tensor no operator or graph edge touches.
UNUSED = -1


def align_up(size: int, alignment: int = ARENA_ALIGNMENT) -> int:
    return -(-size // alignment) * alignment


@dataclass(frozen=True, slots=True)
class Buffer:
    """A planned buffer: ``size`` bytes, alive over scopes ``[first_use, last_use]``."""

    size: int
    first_use: int
    last_use: int

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"buffer size must be >= 0, got {self.size}")
        if self.first_use > self.last_use:
            raise ValueError(f"first_use {self.first_use} is after last_use {self.last_use}")

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first_use <= other.last_use and other.first_use <= self.last_use


@dataclass(frozen=True, slots=True)
class ArenaPlan:
    """Offsets in the order the buffers were given, and the bytes the plan spans."""

    offsets: tuple[int, ...]
    head_bytes: int


def plan_greedy(buffers: Sequence[Buffer]) -> ArenaPlan:
    """Place buffers the way TFLM's ``GreedyMemoryPlanner`` does.

    Largest first; among equal sizes the later-added buffer first (TFLM fills its sort
    array from the tail, then bubble-sorts stably). Each buffer goes into the first gap,
    in offset order, between buffers alive at the same time that is large enough; else
    after the last of them. Quadratic, like TFLM: callers cap the buffer count.
    """
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].size, -i))
    offsets = [0] * len(buffers)
    by_offset: list[tuple[int, int]] = []  # (offset, buffer index), sorted
    for index in order:
        wanted = buffers[index]
        offset = _lowest_fit(wanted, by_offset, buffers)
        offsets[index] = offset
        bisect.insort(by_offset, (offset, index))
    head = max((offsets[i] + b.size for i, b in enumerate(buffers)), default=0)
    return ArenaPlan(offsets=tuple(offsets), head_bytes=head)


def _lowest_fit(
    wanted: Buffer, by_offset: Iterable[tuple[int, int]], buffers: Sequence[Buffer]
) -> int:
    candidate = 0
    for offset, index in by_offset:
        placed = buffers[index]
        if not placed.overlaps_in_time(wanted):
            continue
        if offset - candidate >= wanted.size:
            break
        candidate = max(candidate, offset + placed.size)
    return candidate


def tflm_lifetimes(
    tensor_count: int,
    graph_inputs: Sequence[int],
    graph_outputs: Sequence[int],
    operators: Sequence[tuple[Sequence[int], Sequence[int]]],
) -> list[tuple[int, int]]:
    """(first_use, last_use) per tensor, as TFLM's ``AllocationInfoBuilder`` marks them.

    ``operators`` are (input indices, output indices) in execution order; an input index
    of -1 is an omitted optional input. Untouched tensors keep (-1, -1), as in TFLM.
    """
    first = [UNUSED] * tensor_count
    last = [UNUSED] * tensor_count

    def create(tensor: int, scope: int) -> None:
        if first[tensor] == UNUSED:
            first[tensor] = scope

    def use(tensor: int, scope: int) -> None:
        last[tensor] = scope

    for tensor in graph_inputs:
        create(tensor, 0)
        use(tensor, 0)
    scope = 0
    for inputs, outputs in operators:
        scope += 1
        for tensor in outputs:
            create(tensor, scope)
        for tensor in inputs:
            if tensor >= 0:
                use(tensor, scope)
        for tensor in outputs:
            use(tensor, scope)
    for tensor in graph_outputs:
        create(tensor, scope)
        use(tensor, scope)
    return list(zip(first, last, strict=True))


@dataclass(frozen=True, slots=True)
class TflmOverheads:
    """Arena bytes TFLM takes beyond the activation plan, per structure.

    Two phases share the head region: while kernels run ``Prepare`` the head holds
    temporary ``TfLiteTensor`` views of one operator's tensors (with a zero-point array
    per quantised tensor); afterwards it holds the activation plan. The tail holds what
    persists. ``HOST_64BIT`` is calibrated on tflite-micro's 64-bit host build, whose
    structs hold 8-byte pointers: on a 32-bit MCU the same model needs less, so these
    margins err on the safe side there. Scratch buffers that optimised kernels (e.g.
    CMSIS-NN) request are not included.
    """

    base_bytes: int
    per_tensor_bytes: int
    per_operator_bytes: int
    per_io_tensor_bytes: int
    per_channel_bytes: int
    temp_tensor_bytes: int
    temp_quantization_bytes: int
    temp_zero_point_bytes: int

    def tail(
        self,
        *,
        tensors: int,
        operators: int,
        io_tensors: int,
        requantized_channels: int,
        variable_bytes: int,
    ) -> int:
        """Persistent bytes; ``variable_bytes`` (variable tensors) persist too."""
        return align_up(
            self.base_bytes
            + self.per_tensor_bytes * tensors
            + self.per_operator_bytes * operators
            + self.per_io_tensor_bytes * io_tensors
            + self.per_channel_bytes * requantized_channels
            + variable_bytes
        )

    def prepare(self, quantization_channels: Iterable[int]) -> int:
        """Temporary bytes while one operator prepares, given each of its tensors'
        number of quantisation parameters (0 for an unquantised tensor)."""
        return align_up(
            sum(
                self.temp_tensor_bytes
                + (self.temp_quantization_bytes + self.temp_zero_point_bytes * n if n else 0)
                for n in quantization_channels
            )
        )


# Persistent: TfLiteEvalTensor 24 B per tensor; NodeAndRegistration 64 B + kernel op data
# and parsed builtin options ~48 B per operator; TfLiteTensor 64 B + quantisation 32 B
# per graph input/output; an int32 multiplier and shift (8 B) per output channel of
# conv/dense kernels; ~800 B of interpreter bookkeeping. Temporary: TfLiteTensor 64 B,
# TfLiteAffineQuantization + array header 28 B, int32 zero point 4 B per channel.
HOST_64BIT = TflmOverheads(
    base_bytes=800,
    per_tensor_bytes=24,
    per_operator_bytes=112,
    per_io_tensor_bytes=96,
    per_channel_bytes=8,
    temp_tensor_bytes=64,
    temp_quantization_bytes=28,
    temp_zero_point_bytes=4,
)
