"""Refuse graphs whose tensor shapes would only be known at run time.

TFLM plans every tensor's bytes before the first inference and never resizes one. Two
things it refuses while preparing a model, and so does inspection:

- an operator output with a dimension <= 0 (``CheckDynamicTensors`` in
  ``micro_interpreter_graph.cc``; the legacy scalar shape ``[0]`` is allowed);
- an operator whose output shape follows from the *values* of an input that is not a
  constant: LiteRT resizes that output at run time, TFLM's kernel refuses in ``Prepare``
  ("Non-constant >size< tensor is not supported"). :data:`SHAPE_INPUTS` lists, per
  builtin, the inputs the kernel requires constant.

A ``-1`` in a ``shape_signature`` is not such a case: TFLM reads ``shape`` only.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleet.inspection._reader import Graph, OperatorInfo, TensorInfo
from fleet.inspection.errors import ModelRejected, RejectCode

__all__ = ["SHAPE_INPUTS", "check_runnable"]

# builtin -> (input index, the kernel's name for it) that TFLM requires constant.
SHAPE_INPUTS: dict[str, tuple[tuple[int, str], ...]] = {
    "BROADCAST_TO": ((1, "shape"),),
    "EXPAND_DIMS": ((1, "axis"),),
    "FILL": ((0, "dims"),),
    "PAD": ((1, "paddings"),),
    "PADV2": ((1, "paddings"),),
    "RESIZE_BILINEAR": ((1, "size"),),
    "RESIZE_NEAREST_NEIGHBOR": ((1, "size"),),
    "SPLIT": ((0, "axis"),),
    "SPLIT_V": ((2, "axis"),),
    "STRIDED_SLICE": ((1, "begin"), (2, "end"), (3, "strides")),
    "TRANSPOSE": ((1, "perm"),),
}


def check_runnable(graph: Graph) -> None:
    for index, op in enumerate(graph.operators):
        _check_shape_inputs(index, op, graph.tensors)
        for tensor in op.outputs:
            _check_output_dims(index, op, tensor, graph.tensors[tensor])


def _check_shape_inputs(index: int, op: OperatorInfo, tensors: Sequence[TensorInfo]) -> None:
    if op.kind.custom:
        return
    for position, role in SHAPE_INPUTS.get(op.kind.name, ()):
        if position >= len(op.inputs) or op.inputs[position] < 0:
            continue
        tensor = tensors[op.inputs[position]]
        if not tensor.resident:
            raise ModelRejected(
                RejectCode.DYNAMIC_SHAPE,
                f"operator {index} ({op.kind.name}) takes its {role} from tensor "
                f"{op.inputs[position]} ({tensor.name!r}), which is computed at run time, "
                "so its output would be resized while the model runs; TFLM needs a "
                f"constant {role} (fold it into the model when converting)",
            )


def _check_output_dims(index: int, op: OperatorInfo, tensor: int, info: TensorInfo) -> None:
    if info.shape == (0,) or all(dim > 0 for dim in info.shape):
        return
    raise ModelRejected(
        RejectCode.DYNAMIC_SHAPE,
        f"operator {index} ({op.kind.name}) writes tensor {tensor} ({info.name!r}) of shape "
        f"{list(info.shape)}: a dimension <= 0 is a tensor sized at run time, which TFLM "
        "refuses",
    )
