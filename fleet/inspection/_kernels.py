"""What each operator's TFLM kernel asks of the arena, read off the model's tensors.

The sizes are :mod:`fleet.domain.arena`'s; this module only knows which tensors a
kernel looks at: the filter whose channels get an int32 multiplier and shift each
(``conv_common.cc``, ``depthwise_conv_common.cc``, ``fully_connected_common.cc``), and
the scratch buffers the reference kernels request (``reduce_common.cc``; a conv-family
kernel unpacking an int4 filter).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fleet.domain.arena import OperatorDemand
from fleet.inspection._reader import OperatorInfo, TensorInfo

__all__ = ["operator_demand"]

_CONV_FAMILY = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"})
_FILTER_INPUT = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1}
_MEAN_OR_SUM = frozenset({"MEAN", "SUM"})
_MIN_MAX_PROD = frozenset({"REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"})
_INT_BYTES = 4


def operator_demand(op: OperatorInfo, tensors: Sequence[TensorInfo]) -> OperatorDemand:
    touched = [tensors[t] for t in (*op.inputs, *op.outputs) if t >= 0]
    kind = op.kind.name if not op.kind.custom else f"custom:{op.kind.name}"
    return OperatorDemand(
        kind=kind,
        tensor_channels=tuple(t.channels for t in touched),
        requantized_channels=0 if op.kind.custom else _requantized_channels(op, tensors),
        scratch=() if op.kind.custom else _scratch(op, tensors),
    )


def _input(op: OperatorInfo, tensors: Sequence[TensorInfo], position: int) -> TensorInfo | None:
    if position < len(op.inputs) and op.inputs[position] >= 0:
        return tensors[op.inputs[position]]
    return None


def _requantized_channels(op: OperatorInfo, tensors: Sequence[TensorInfo]) -> int:
    name = op.kind.name
    if name in _CONV_FAMILY:
        # Allocated for every conv-family kernel: one per output channel.
        output = tensors[op.outputs[0]] if op.outputs else None
        return output.shape[-1] if output is not None and output.shape else 0
    if name == "FULLY_CONNECTED":
        # Only for a filter quantised per channel: one per filter scale.
        weights = _input(op, tensors, _FILTER_INPUT[name])
        return weights.channels if weights is not None and weights.channels > 1 else 0
    return 0


def _scratch(op: OperatorInfo, tensors: Sequence[TensorInfo]) -> tuple[int, ...]:
    name = op.kind.name
    data = _input(op, tensors, 0)
    if name in _MEAN_OR_SUM or name in _MIN_MAX_PROD:
        return _reducer_scratch(op, tensors, data)
    weights = _input(op, tensors, _FILTER_INPUT[name]) if name in _FILTER_INPUT else None
    if weights is not None and weights.dtype == "INT4":
        return (math.prod(weights.shape),)  # the filter unpacked to int8
    return ()


def _reducer_scratch(
    op: OperatorInfo, tensors: Sequence[TensorInfo], data: TensorInfo | None
) -> tuple[int, ...]:
    axis = _input(op, tensors, 1)
    rank = len(data.shape) if data is not None else 0
    axes = math.prod(axis.shape) if axis is not None else 0
    buffers = [_INT_BYTES * rank, _INT_BYTES * axes]
    output = tensors[op.outputs[0]] if op.outputs else None
    quantized = data is not None and data.dtype in {"INT8", "INT16"}
    if op.kind.name in _MEAN_OR_SUM and quantized and output is not None:
        buffers.insert(0, _INT_BYTES * math.prod(output.shape))  # int32 accumulators
    return tuple(buffers)
