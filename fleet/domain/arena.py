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
- :class:`TflmOverheads` holds the sizes of what TFLM's allocator puts in the arena
  besides activations (its own objects, per-tensor and per-operator structs, kernels'
  data, ``Prepare`` and planning temporaries), and :func:`estimate_arena` adds them up
  phase by phase the way ``MicroAllocator`` and ``MicroInterpreter::AllocateTensors``
  allocate them. Kernel data is per kernel: listed kernels carry their real sizes,
  others a bound.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "ARENA_ALIGNMENT",
    "HOST_64BIT",
    "ArenaPlan",
    "Buffer",
    "OperatorDemand",
    "TflmOverheads",
    "align_up",
    "estimate_arena",
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
class OperatorDemand:
    """What one operator's kernel asks of the arena, as read from the model.

    ``tensor_channels`` has one entry per tensor the kernel views while it prepares
    (its inputs and outputs): the number of quantisation parameters, 0 if unquantised.
    ``requantized_channels`` is the length of the int32 multiplier and shift arrays the
    conv-family kernels keep (0: none). ``scratch`` is the bytes of each scratch buffer
    the kernel requests; TFLM plans those in the head, alive while the operator runs.
    """

    kind: str
    tensor_channels: tuple[int, ...] = ()
    requantized_channels: int = 0
    scratch: tuple[int, ...] = ()


@dataclass(frozen=True)
class TflmOverheads:
    """The sizes TFLM's allocator works with, beyond the activations themselves.

    The arena holds two regions. The *tail* grows down from the end and keeps what
    persists: the allocator and planner objects, a ``TfLiteEvalTensor`` per tensor, a
    ``NodeAndRegistration`` per operator, each operator's parsed options and kernel
    data (``OpData``, per-channel multiplier and shift arrays), a handle per scratch
    buffer, the persistent ``TfLiteTensor`` of each graph input and output, variable
    tensors. The *head* grows up from the start and holds, one phase after the other:
    while each kernel prepares, the scratch-buffer requests and temporary
    ``TfLiteTensor`` views of its tensors; while the plan is made, an
    ``AllocationInfo`` per tensor and the planner's lists; then the activation plan.
    The arena needs the largest head phase plus the tail.

    Every persistent allocation is aligned: 16 bytes for kernel data
    (``MicroArenaBufferAlignment``), the struct's own alignment for the rest; each group
    is rounded up to 16 here, so the sum bounds the padding.
    """

    base_bytes: int
    eval_tensor_bytes: int
    node_bytes: int
    tensor_bytes: int
    quantization_bytes: int
    int_bytes: int
    pointer_bytes: int
    scratch_request_bytes: int
    scratch_requests_per_op: int
    allocation_info_bytes: int
    planner_bytes_per_buffer: int
    op_data: Mapping[str, int]
    default_op_data: int
    builtin_data: Mapping[str, int]
    default_builtin_data: int

    def tail(
        self,
        *,
        tensor_count: int,
        operators: Sequence[OperatorDemand],
        inputs: Sequence[int],
        outputs: Sequence[int],
        variable_bytes: int,
    ) -> int:
        """Persistent bytes. ``inputs``/``outputs``: quantisation parameters per graph
        input and output; ``variable_bytes``: variable tensors, each aligned."""
        options = sum(
            align_up(self.builtin_data.get(op.kind, self.default_builtin_data), 4)
            for op in operators
        )
        kernels = sum(self._kernel_bytes(op) for op in operators)
        handles = self.pointer_bytes * sum(len(op.scratch) for op in operators)
        graph_io = (
            align_up(self.pointer_bytes * len(inputs))
            + align_up(self.pointer_bytes * len(outputs))
            + sum(self._tensor_view(channels) for channels in (*inputs, *outputs))
        )
        return (
            align_up(self.base_bytes)
            + align_up(self.eval_tensor_bytes * tensor_count)
            + align_up(self.node_bytes * len(operators))
            + align_up(options)
            + kernels
            + align_up(handles)
            + align_up(graph_io)
            + variable_bytes
            # An arena whose start or end is not 16-byte aligned loses up to 15 bytes.
            + ARENA_ALIGNMENT
        )

    def prepare(self, operator: OperatorDemand, earlier_scratch: int) -> int:
        """Head bytes while ``operator`` prepares, after ``earlier_scratch`` requests."""
        requests = self.scratch_request_bytes * (earlier_scratch + self.scratch_requests_per_op)
        views = sum(self._tensor_view(channels) for channels in operator.tensor_channels)
        return align_up(requests) + align_up(views)

    def planning(self, *, tensor_count: int, planned_buffers: int, scratch_count: int) -> int:
        """Head bytes while TFLM builds the memory plan."""
        requests = self.scratch_request_bytes * (scratch_count + self.scratch_requests_per_op)
        info = self.allocation_info_bytes * (tensor_count + scratch_count)
        lists = self.planner_bytes_per_buffer * (planned_buffers + scratch_count)
        return align_up(requests) + align_up(info) + align_up(lists)

    def _kernel_bytes(self, operator: OperatorDemand) -> int:
        data = align_up(self.op_data.get(operator.kind, self.default_op_data))
        if operator.requantized_channels:
            data += 2 * align_up(self.int_bytes * operator.requantized_channels)
        return data

    def _tensor_view(self, channels: int) -> int:
        """A ``TfLiteTensor`` and, when quantised, its parameters and zero points."""
        if not channels:
            return self.tensor_bytes
        zero_points = self.int_bytes * (1 + channels)
        return align_up(self.tensor_bytes + self.quantization_bytes + zero_points, 8)


def estimate_arena(
    *,
    tensor_count: int,
    planned: Sequence[Buffer],
    operators: Sequence[OperatorDemand],
    inputs: Sequence[int],
    outputs: Sequence[int],
    variable_bytes: int,
    overheads: TflmOverheads,
) -> tuple[int, int, int]:
    """(head, temporaries, tail): the activation plan with the operators' scratch
    buffers, the largest head phase before the plan (Prepare or planning), and the
    persistent tail. ``planned`` are the tensors TFLM plans, in tensor order, with
    ``tflm_lifetimes``; operator ``i`` runs in scope ``i + 1``."""
    scratch = [
        Buffer(align_up(size), scope, scope)
        for scope, op in enumerate(operators, start=1)
        for size in op.scratch
    ]
    head = plan_greedy([*planned, *scratch]).head_bytes
    earlier = 0
    temporaries = overheads.planning(
        tensor_count=tensor_count, planned_buffers=len(planned), scratch_count=len(scratch)
    )
    for op in operators:
        temporaries = max(temporaries, overheads.prepare(op, earlier))
        earlier += len(op.scratch)
    tail = overheads.tail(
        tensor_count=tensor_count,
        operators=operators,
        inputs=inputs,
        outputs=outputs,
        variable_bytes=variable_bytes,
    )
    return head, temporaries, tail


# Calibrated on the 64-bit host build of tflite-micro (the ``tflite_micro`` Python
# runtime, its RecordingMicroAllocator, compression support on); struct sizes are
# sizeof() there. On a 32-bit MCU pointers are half as wide and the allocator is the
# plain MicroAllocator, so the same model needs less: these err on the safe side.
#   base: RecordingSingleArenaBufferAllocator 104, GreedyMemoryPlanner 72,
#         RecordingMicroAllocator 272, MicroBuiltinDataAllocator 16, SubgraphAllocations 24
#   op_data: the kernel's OpData (OpDataConv 80, OpDataFullyConnected 72, SoftmaxParams
#         80, StridedSliceParams 84, ...); ops with none are 0; unlisted ops get 128,
#         more than any listed kernel. Kernels that keep tables (int16 softmax, LSTM,
#         SVDF) need more than that and are not modelled.
#   builtin_data: the parsed options struct (TfLiteConvParams 28, TfLitePoolParams 40,
#         ...); unlisted ops get 40, the largest listed.
_CONV_FAMILY = ("CONV_2D", "DEPTHWISE_CONV_2D")
_REDUCERS = ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD")
_POOLS = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D")
_NO_OP_DATA = ("RESHAPE", "EXPAND_DIMS", "SQUEEZE", "SHAPE", "PACK", "UNPACK")
_NO_OPTIONS = ("EXPAND_DIMS", "QUANTIZE", "DEQUANTIZE", "LOGISTIC", "TANH", "RELU", "RELU6")
HOST_64BIT = TflmOverheads(
    base_bytes=104 + 72 + 272 + 16 + 24,
    eval_tensor_bytes=24,
    node_bytes=64,
    tensor_bytes=64,
    quantization_bytes=24,
    int_bytes=4,
    pointer_bytes=8,
    scratch_request_bytes=16,
    scratch_requests_per_op=12,
    allocation_info_bytes=32,
    planner_bytes_per_buffer=40,
    op_data={
        **dict.fromkeys(_CONV_FAMILY, 80),
        "FULLY_CONNECTED": 72,
        **dict.fromkeys(_REDUCERS, 44),
        **dict.fromkeys(_POOLS, 32),
        "SOFTMAX": 80,
        "STRIDED_SLICE": 84,
        "ADD": 64,
        "SUB": 64,
        "MUL": 36,
        "QUANTIZE": 32,
        "DEQUANTIZE": 32,
        "LOGISTIC": 16,
        "TANH": 16,
        "RELU": 28,
        "RELU6": 8,
        "LEAKY_RELU": 24,
        "HARD_SWISH": 20,
        "PAD": 56,
        "PADV2": 56,
        "CONCATENATION": 48,
        **dict.fromkeys(_NO_OP_DATA, 0),
    },
    default_op_data=128,
    builtin_data={
        **dict.fromkeys(_CONV_FAMILY, 28),
        "FULLY_CONNECTED": 32,
        **dict.fromkeys(_REDUCERS, 1),
        **dict.fromkeys(_POOLS, 40),
        "SOFTMAX": 4,
        "RESHAPE": 36,
        "STRIDED_SLICE": 24,
        "PACK": 8,
        "SHAPE": 4,
        "ADD": 8,
        "SUB": 8,
        "MUL": 4,
        "CONCATENATION": 8,
        "SQUEEZE": 36,
        "TRANSPOSE_CONV": 20,
        "SPLIT": 4,
        "UNPACK": 8,
        "GATHER": 8,
        "LEAKY_RELU": 4,
        "PAD": 1,
        "PADV2": 1,
        "TRANSPOSE": 1,
        "RESIZE_BILINEAR": 2,
        **dict.fromkeys(_NO_OPTIONS, 0),
    },
    default_builtin_data=40,
)
