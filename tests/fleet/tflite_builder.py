"""Build small ``.tflite`` flatbuffers by hand, without TensorFlow.

Enough of the schema to make valid models, odd-but-valid models (custom ops, two
subgraphs, dynamic shapes, float tensors in an int8 graph) and the starting point of
hostile variants, so inspection tests run where the ``ml`` extra is absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from tflite.Buffer import BufferAddData, BufferEnd, BufferStart
from tflite.BuiltinOperator import BuiltinOperator
from tflite.Model import (
    ModelAddBuffers,
    ModelAddDescription,
    ModelAddOperatorCodes,
    ModelAddSubgraphs,
    ModelAddVersion,
    ModelEnd,
    ModelStart,
    ModelStartBuffersVector,
    ModelStartOperatorCodesVector,
    ModelStartSubgraphsVector,
)
from tflite.Operator import (
    OperatorAddInputs,
    OperatorAddOpcodeIndex,
    OperatorAddOutputs,
    OperatorEnd,
    OperatorStart,
)
from tflite.OperatorCode import (
    OperatorCodeAddBuiltinCode,
    OperatorCodeAddCustomCode,
    OperatorCodeAddDeprecatedBuiltinCode,
    OperatorCodeAddVersion,
    OperatorCodeEnd,
    OperatorCodeStart,
)
from tflite.QuantizationParameters import (
    QuantizationParametersAddScale,
    QuantizationParametersAddZeroPoint,
    QuantizationParametersEnd,
    QuantizationParametersStart,
)
from tflite.SubGraph import (
    SubGraphAddInputs,
    SubGraphAddName,
    SubGraphAddOperators,
    SubGraphAddOutputs,
    SubGraphAddTensors,
    SubGraphEnd,
    SubGraphStart,
    SubGraphStartOperatorsVector,
    SubGraphStartTensorsVector,
)
from tflite.Tensor import (
    TensorAddBuffer,
    TensorAddIsVariable,
    TensorAddName,
    TensorAddQuantization,
    TensorAddShape,
    TensorAddShapeSignature,
    TensorAddType,
    TensorEnd,
    TensorStart,
)
from tflite.TensorType import TensorType

INT8 = TensorType.INT8
INT32 = TensorType.INT32
FLOAT32 = TensorType.FLOAT32


@dataclass
class T:
    """A tensor; ``data`` makes it a constant held in its own buffer."""

    name: str
    shape: Sequence[int]
    dtype: int = INT8
    data: bytes | None = None
    signature: Sequence[int] | None = None
    quant: tuple[float, int] | None = None
    variable: bool = False
    buffer: int | None = None  # force a buffer index (for dangling references)


@dataclass
class Op:
    opcode: int  # index into Graph.opcodes
    inputs: Sequence[int]
    outputs: Sequence[int]


@dataclass
class Graph:
    tensors: list[T]
    operators: list[Op]
    inputs: Sequence[int]
    outputs: Sequence[int]
    # (builtin code, custom code) per operator code
    opcodes: list[tuple[int, str | None]] = field(default_factory=list)


def tiny_classifier() -> Graph:
    """int8 [1, 8] -> FULLY_CONNECTED -> [1, 4] -> SOFTMAX -> [1, 4]."""
    return Graph(
        tensors=[
            T("input", [1, 8], quant=(0.05, -3)),
            T("weights", [4, 8], data=bytes(32), quant=(0.01, 0)),
            T("bias", [4], dtype=INT32, data=bytes(16), quant=(0.0005, 0)),
            T("logits", [1, 4], quant=(0.1, 2)),
            T("probabilities", [1, 4], quant=(1 / 256, -128)),
        ],
        operators=[Op(0, [0, 1, 2], [3]), Op(1, [3], [4])],
        inputs=[0],
        outputs=[4],
        opcodes=[(BuiltinOperator.FULLY_CONNECTED, None), (BuiltinOperator.SOFTMAX, None)],
    )


def build(
    graph: Graph,
    *,
    version: int = 3,
    subgraphs: int = 1,
    description: str = "tinyfleet test model",
) -> bytes:
    """Serialise ``graph`` (repeated ``subgraphs`` times) as a TFL3 flatbuffer."""
    b = flatbuffers.Builder(1024)
    buffer_data: list[bytes | None] = [None]  # buffer 0: the empty sentinel
    buffer_of: list[int] = []
    for tensor in graph.tensors:
        if tensor.buffer is not None:
            buffer_of.append(tensor.buffer)
        elif tensor.data is None:
            buffer_of.append(0)
        else:
            buffer_of.append(len(buffer_data))
            buffer_data.append(tensor.data)
    buffers = [_buffer(b, data) for data in buffer_data]
    opcodes = [_opcode(b, code, custom) for code, custom in graph.opcodes]
    graphs = [_subgraph(b, graph, buffer_of) for _ in range(subgraphs)]
    description_offset = b.CreateString(description)
    opcode_vec = _tables(b, ModelStartOperatorCodesVector, opcodes)
    subgraph_vec = _tables(b, ModelStartSubgraphsVector, graphs)
    buffer_vec = _tables(b, ModelStartBuffersVector, buffers)
    ModelStart(b)
    ModelAddVersion(b, version)
    ModelAddOperatorCodes(b, opcode_vec)
    ModelAddSubgraphs(b, subgraph_vec)
    ModelAddDescription(b, description_offset)
    ModelAddBuffers(b, buffer_vec)
    b.Finish(ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _tables(b: flatbuffers.Builder, start, offsets: Sequence[int]) -> int:
    start(b, len(offsets))
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _ints(b: flatbuffers.Builder, values: Sequence[int], dtype=np.int32) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=dtype))


def _buffer(b: flatbuffers.Builder, data: bytes | None) -> int:
    vec = b.CreateByteVector(data) if data else None
    BufferStart(b)
    if vec is not None:
        BufferAddData(b, vec)
    return BufferEnd(b)


def _opcode(b: flatbuffers.Builder, code: int, custom: str | None) -> int:
    name = b.CreateString(custom) if custom is not None else None
    OperatorCodeStart(b)
    OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
    OperatorCodeAddBuiltinCode(b, code)
    OperatorCodeAddVersion(b, 1)
    if name is not None:
        OperatorCodeAddCustomCode(b, name)
    return OperatorCodeEnd(b)


def _subgraph(b: flatbuffers.Builder, graph: Graph, buffer_of: Sequence[int]) -> int:
    tensors = [_tensor(b, t, buffer_of[i]) for i, t in enumerate(graph.tensors)]
    operators = [_operator(b, op) for op in graph.operators]
    tensor_vec = _tables(b, SubGraphStartTensorsVector, tensors)
    operator_vec = _tables(b, SubGraphStartOperatorsVector, operators)
    inputs, outputs = _ints(b, graph.inputs), _ints(b, graph.outputs)
    name = b.CreateString("main")
    SubGraphStart(b)
    SubGraphAddTensors(b, tensor_vec)
    SubGraphAddInputs(b, inputs)
    SubGraphAddOutputs(b, outputs)
    SubGraphAddOperators(b, operator_vec)
    SubGraphAddName(b, name)
    return SubGraphEnd(b)


def _tensor(b: flatbuffers.Builder, t: T, buffer: int) -> int:
    quant = None
    if t.quant is not None:
        scale = b.CreateNumpyVector(np.asarray([t.quant[0]], dtype=np.float32))
        zero_point = b.CreateNumpyVector(np.asarray([t.quant[1]], dtype=np.int64))
        QuantizationParametersStart(b)
        QuantizationParametersAddScale(b, scale)
        QuantizationParametersAddZeroPoint(b, zero_point)
        quant = QuantizationParametersEnd(b)
    shape = _ints(b, t.shape)
    signature = _ints(b, t.signature) if t.signature is not None else None
    name = b.CreateString(t.name)
    TensorStart(b)
    TensorAddShape(b, shape)
    TensorAddType(b, t.dtype)
    TensorAddBuffer(b, buffer)
    TensorAddName(b, name)
    if quant is not None:
        TensorAddQuantization(b, quant)
    if t.variable:
        TensorAddIsVariable(b, True)
    if signature is not None:
        TensorAddShapeSignature(b, signature)
    return TensorEnd(b)


def _operator(b: flatbuffers.Builder, op: Op) -> int:
    inputs, outputs = _ints(b, op.inputs), _ints(b, op.outputs)
    OperatorStart(b)
    OperatorAddOpcodeIndex(b, op.opcode)
    OperatorAddInputs(b, inputs)
    OperatorAddOutputs(b, outputs)
    return OperatorEnd(b)
