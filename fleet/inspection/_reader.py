"""Read a TFL3 flatbuffer into plain values, checking every offset, count and index.

The generated ``tflite`` accessors do the decoding; ``FlatView`` checks each table,
vector and string before they touch it, and the caller maps whatever the flatbuffers
runtime still raises (``flatbuffer_errors``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fleet.domain.model_card import Quantization
from fleet.inspection import _schema as fb
from fleet.inspection._flatbuf import FlatView
from fleet.inspection.errors import ModelRejected, RejectCode
from fleet.inspection.limits import InspectionLimits

__all__ = ["Graph", "OpKind", "OperatorInfo", "TensorInfo", "read_graph"]


@dataclass(frozen=True, slots=True)
class OpKind:
    name: str
    custom: bool


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    dtype: str
    resident: bool  # data lives in the flatbuffer (a constant): not planned in the arena
    variable: bool  # allocated once in the arena's persistent tail
    nbytes: int  # arena bytes, 0 for a resident tensor
    channels: int  # quantisation parameters (scales), 0 when unquantised
    quantization: Quantization | None


@dataclass(frozen=True, slots=True)
class OperatorInfo:
    kind: OpKind
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Graph:
    tensors: tuple[TensorInfo, ...]
    operators: tuple[OperatorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def read_graph(view: FlatView, model: Any, file_size: int, limits: InspectionLimits) -> Graph:
    opcodes = _read_opcodes(view, model, limits)
    subgraphs = view.vector_length(
        model, fb.MODEL_SUBGRAPHS, elem_size=4, cap=limits.max_subgraphs, what="subgraphs"
    )
    if subgraphs != 1:
        raise ModelRejected(
            RejectCode.SUBGRAPHS,
            f"model has {subgraphs} subgraphs; only single-subgraph models are supported "
            "(no control flow such as IF, WHILE or CALL_ONCE)",
        )
    buffers = view.vector_length(
        model, fb.MODEL_BUFFERS, elem_size=4, cap=limits.max_buffers, what="buffers"
    )
    graph = view.table(model.Subgraphs(0), "subgraph 0")
    count = view.vector_length(
        graph, fb.SUBGRAPH_TENSORS, elem_size=4, cap=limits.max_tensors, what="tensors"
    )
    inputs = _indices(
        view,
        graph,
        fb.SUBGRAPH_INPUTS,
        graph.InputsAsNumpy,
        "graph inputs",
        cap=limits.max_graph_io,
        low=0,
        count=count,
    )
    outputs = _indices(
        view,
        graph,
        fb.SUBGRAPH_OUTPUTS,
        graph.OutputsAsNumpy,
        "graph outputs",
        cap=limits.max_graph_io,
        low=0,
        count=count,
    )
    edges = set(inputs) | set(outputs)
    tensors = tuple(
        _read_tensor(view, model, graph.Tensors(i), i, buffers, file_size, limits, i in edges)
        for i in range(count)
    )
    operators = view.vector_length(
        graph, fb.SUBGRAPH_OPERATORS, elem_size=4, cap=limits.max_operators, what="operators"
    )
    ops = tuple(
        _read_operator(view, graph.Operators(k), k, opcodes, count, limits)
        for k in range(operators)
    )
    return Graph(tensors=tensors, operators=ops, inputs=inputs, outputs=outputs)


def _read_opcodes(view: FlatView, model: Any, limits: InspectionLimits) -> tuple[OpKind, ...]:
    count = view.vector_length(
        model,
        fb.MODEL_OPERATOR_CODES,
        elem_size=4,
        cap=limits.max_operator_codes,
        what="operator_codes",
    )
    kinds = []
    for j in range(count):
        what = f"operator code {j}"
        opcode = view.table(model.OperatorCodes(j), what)
        # TFLM resolves max(deprecated_builtin_code, builtin_code); versions are ignored.
        code = max(int(opcode.DeprecatedBuiltinCode()), int(opcode.BuiltinCode()))
        if code < 0:
            raise ModelRejected(RejectCode.MALFORMED, f"{what} has builtin code {code}")
        if code != fb.BUILTIN_CUSTOM:
            kinds.append(OpKind(fb.builtin_name(code), custom=False))
            continue
        name = view.string(
            opcode, fb.OPCODE_CUSTOM_CODE, cap=limits.max_name_bytes, what=f"{what}'s custom_code"
        )
        if not name:
            raise ModelRejected(RejectCode.MALFORMED, f"{what} is CUSTOM without a custom_code")
        kinds.append(OpKind(name, custom=True))
    return tuple(kinds)


def _read_tensor(
    view: FlatView,
    model: Any,
    tensor: Any,
    index: int,
    buffers: int,
    file_size: int,
    limits: InspectionLimits,
    with_quantization: bool,
) -> TensorInfo:
    view.table(tensor, f"tensor {index}")
    name = view.string(
        tensor, fb.TENSOR_NAME, cap=limits.max_name_bytes, what=f"tensor {index}'s name"
    )
    label = f"tensor {index} ({name!r})"
    shape = _ints(
        view,
        tensor,
        fb.TENSOR_SHAPE,
        tensor.ShapeAsNumpy,
        f"{label}'s shape",
        cap=limits.max_rank,
        elem_size=4,
    )
    signature = (
        _ints(
            view,
            tensor,
            fb.TENSOR_SHAPE_SIGNATURE,
            tensor.ShapeSignatureAsNumpy,
            f"{label}'s shape_signature",
            cap=limits.max_rank,
            elem_size=4,
        )
        or shape
    )
    _check_static_shape(label, shape, signature)
    dtype = fb.type_name(int(tensor.Type()))
    buffer = int(tensor.Buffer())
    if buffer >= buffers:
        raise ModelRejected(
            RejectCode.BAD_REFERENCE, f"{label} uses buffer {buffer}; the model has {buffers}"
        )
    resident = _buffer_has_data(view, model, buffer, file_size)
    params = tensor.Quantization()
    quantization = None
    if with_quantization:
        quantization = _read_quantization(view, params, label, limits)
    return TensorInfo(
        name=name,
        shape=shape,
        signature=signature,
        dtype=dtype,
        resident=resident,
        variable=bool(tensor.IsVariable()),
        nbytes=0 if resident else _arena_bytes(label, dtype, shape, limits),
        channels=_quantization_channels(view, params, label, limits),
        quantization=quantization,
    )


def _check_static_shape(label: str, shape: tuple[int, ...], signature: tuple[int, ...]) -> None:
    """TFLM plans and runs ``shape``; ``shape_signature`` only records what was left open.

    The standard converter writes ``[-1, ...]`` as the signature of a Keras ``Input``
    without a batch size and ``[1, ...]`` as the shape: that runs with batch 1. A
    negative dimension in ``shape`` itself has no size to plan.
    """
    if len(signature) != len(shape):
        raise ModelRejected(
            RejectCode.MALFORMED,
            f"{label} has shape {list(shape)} but shape_signature {list(signature)}",
        )
    negative = [axis for axis, dim in enumerate(shape) if dim < 0]
    if negative:
        raise ModelRejected(
            RejectCode.DYNAMIC_SHAPE,
            f"{label} has shape {list(shape)}: dimension {negative[0]} is {shape[negative[0]]},"
            " so TFLM cannot size it; a microcontroller plans every tensor's bytes before it"
            " runs (export with fixed dimensions)",
        )


def _arena_bytes(label: str, dtype: str, shape: tuple[int, ...], limits: InspectionLimits) -> int:
    if dtype not in fb.TYPE_BYTES:
        raise ModelRejected(
            RejectCode.UNSUPPORTED_DTYPE, f"{label} is a {dtype} activation; TFLM cannot plan it"
        )
    nbytes = math.prod(shape) * fb.TYPE_BYTES[dtype]
    if nbytes > limits.max_tensor_bytes:
        raise ModelRejected(
            RejectCode.TOO_LARGE,
            f"{label} needs {nbytes} bytes; the cap is {limits.max_tensor_bytes} bytes",
        )
    return nbytes


def _buffer_has_data(view: FlatView, model: Any, index: int, file_size: int) -> bool:
    """True when the tensor's data is in the file (TFLM then reads it from flash)."""
    what = f"buffer {index}"
    buffer = view.table(model.Buffers(index), what)
    if view.vector_length(buffer, fb.BUFFER_DATA, elem_size=1, cap=file_size, what=what):
        return True
    # Models over 2 GB keep buffers after the flatbuffer: offset 1 is "none".
    offset, size = int(buffer.Offset()), int(buffer.Size())
    if offset <= 1:
        return False
    if offset + size > file_size:
        raise ModelRejected(
            RejectCode.MALFORMED,
            f"{what} declares {size} bytes at offset {offset}, past the {file_size}-byte file",
        )
    return size > 0


def _quantization_channels(
    view: FlatView, params: Any, label: str, limits: InspectionLimits
) -> int:
    if params is None:
        return 0
    what = f"{label}'s quantization"
    view.table(params, what)
    return view.vector_length(
        params, fb.QUANT_SCALE, elem_size=4, cap=limits.max_quantization_params, what=what
    )


def _read_quantization(
    view: FlatView, params: Any, label: str, limits: InspectionLimits
) -> Quantization | None:
    if params is None:
        return None
    what = f"{label}'s quantization"
    view.table(params, what)
    cap = limits.max_quantization_params
    scales = tuple(
        float(s) for s in _numbers(view, params, fb.QUANT_SCALE, params.ScaleAsNumpy, what, cap, 4)
    )
    zero_points = _ints(
        view, params, fb.QUANT_ZERO_POINT, params.ZeroPointAsNumpy, what, cap=cap, elem_size=8
    )
    if not scales and not zero_points:
        return None
    if len(scales) != len(zero_points) or not all(math.isfinite(s) and s > 0 for s in scales):
        raise ModelRejected(
            RejectCode.MALFORMED,
            f"{what} has {len(scales)} scales {list(scales[:4])} and "
            f"{len(zero_points)} zero points",
        )
    return Quantization(
        scale=scales,
        zero_point=zero_points,
        quantized_dimension=int(params.QuantizedDimension()),
    )


def _read_operator(
    view: FlatView,
    operator: Any,
    index: int,
    opcodes: Sequence[OpKind],
    tensors: int,
    limits: InspectionLimits,
) -> OperatorInfo:
    what = f"operator {index}"
    view.table(operator, what)
    opcode = int(operator.OpcodeIndex())
    if opcode >= len(opcodes):
        raise ModelRejected(
            RejectCode.BAD_REFERENCE,
            f"{what} uses operator code {opcode}; the model has {len(opcodes)}",
        )
    cap = limits.max_operator_tensors
    # -1 is an omitted optional input (a convolution without bias).
    inputs = _indices(
        view,
        operator,
        fb.OPERATOR_INPUTS,
        operator.InputsAsNumpy,
        f"{what}'s inputs",
        cap=cap,
        low=-1,
        count=tensors,
    )
    outputs = _indices(
        view,
        operator,
        fb.OPERATOR_OUTPUTS,
        operator.OutputsAsNumpy,
        f"{what}'s outputs",
        cap=cap,
        low=0,
        count=tensors,
    )
    return OperatorInfo(kind=opcodes[opcode], inputs=inputs, outputs=outputs)


def _indices(
    view: FlatView,
    table: Any,
    field: int,
    read: Callable[[], Any],
    what: str,
    *,
    cap: int,
    low: int,
    count: int,
) -> tuple[int, ...]:
    values = _ints(view, table, field, read, what, cap=cap, elem_size=4)
    for value in values:
        if not low <= value < count:
            raise ModelRejected(
                RejectCode.BAD_REFERENCE, f"{what} name tensor {value}; the model has {count}"
            )
    return values


def _ints(
    view: FlatView,
    table: Any,
    field: int,
    read: Callable[[], Any],
    what: str,
    *,
    cap: int,
    elem_size: int,
) -> tuple[int, ...]:
    return tuple(int(v) for v in _numbers(view, table, field, read, what, cap, elem_size))


def _numbers(
    view: FlatView,
    table: Any,
    field: int,
    read: Callable[[], Any],
    what: str,
    cap: int,
    elem_size: int,
) -> list[Any]:
    """A numeric vector, read as numpy by the generated code once its bounds are checked."""
    if not view.vector_length(table, field, elem_size=elem_size, cap=cap, what=what):
        return []
    values: list[Any] = read().tolist()
    return values
