"""Facts about the TFLite schema that inspection needs: field ids and type sizes.

Field ids follow ``tensorflow/compiler/mlir/lite/schema/schema.fbs`` (vtable slot =
4 + 2 * id); names come from the ``tflite`` package's generated enums.
"""

from __future__ import annotations

from tflite.BuiltinOperator import BuiltinOperator
from tflite.TensorType import TensorType

__all__ = [
    "BUFFER_DATA",
    "BUILTIN_CUSTOM",
    "FILE_IDENTIFIER",
    "FLOAT_TYPES",
    "MODEL_BUFFERS",
    "MODEL_OPERATOR_CODES",
    "MODEL_SUBGRAPHS",
    "OPCODE_CUSTOM_CODE",
    "OPERATOR_INPUTS",
    "OPERATOR_OUTPUTS",
    "QUANTIZED_TYPES",
    "QUANT_SCALE",
    "QUANT_ZERO_POINT",
    "SCHEMA_VERSION",
    "SUBGRAPH_INPUTS",
    "SUBGRAPH_OPERATORS",
    "SUBGRAPH_OUTPUTS",
    "SUBGRAPH_TENSORS",
    "TENSOR_NAME",
    "TENSOR_SHAPE",
    "TENSOR_SHAPE_SIGNATURE",
    "TYPE_BYTES",
    "builtin_name",
    "type_name",
]

SCHEMA_VERSION = 3
FILE_IDENTIFIER = b"TFL3"

# Vector and string fields read through FlatView, by schema field id.
MODEL_OPERATOR_CODES = 1
MODEL_SUBGRAPHS = 2
MODEL_BUFFERS = 4
SUBGRAPH_TENSORS = 0
SUBGRAPH_INPUTS = 1
SUBGRAPH_OUTPUTS = 2
SUBGRAPH_OPERATORS = 3
TENSOR_SHAPE = 0
TENSOR_NAME = 3
TENSOR_SHAPE_SIGNATURE = 7
OPERATOR_INPUTS = 1
OPERATOR_OUTPUTS = 2
OPCODE_CUSTOM_CODE = 1
QUANT_SCALE = 2
QUANT_ZERO_POINT = 3
BUFFER_DATA = 0

_BUILTIN_NAMES: dict[int, str] = {
    code: name for name, code in vars(BuiltinOperator).items() if not name.startswith("_")
}
_TYPE_NAMES: dict[int, str] = {
    code: name for name, code in vars(TensorType).items() if not name.startswith("_")
}
BUILTIN_CUSTOM: int = BuiltinOperator.CUSTOM

# Bytes per element of the types TFLM can hold in its arena.
TYPE_BYTES: dict[str, int] = {
    "FLOAT32": 4,
    "FLOAT16": 2,
    "BFLOAT16": 2,
    "FLOAT64": 8,
    "INT32": 4,
    "UINT32": 4,
    "INT64": 8,
    "UINT64": 8,
    "INT16": 2,
    "UINT16": 2,
    "INT8": 1,
    "UINT8": 1,
    "BOOL": 1,
    "COMPLEX64": 8,
    "COMPLEX128": 16,
}
FLOAT_TYPES = frozenset({"FLOAT32", "FLOAT16", "BFLOAT16", "FLOAT64"})
QUANTIZED_TYPES = frozenset({"INT4", "INT8", "UINT8", "INT16"})


def builtin_name(code: int) -> str:
    """BuiltinOperator name; codes newer than the ``tflite`` package get a stable stand-in."""
    return _BUILTIN_NAMES.get(code, f"BUILTIN_{code}")


def type_name(code: int) -> str:
    return _TYPE_NAMES.get(code, f"TYPE_{code}")
