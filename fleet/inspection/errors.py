"""Why a ``.tflite`` upload is refused.

Exception tree::

    ModelRejected      the model cannot be used; ``code`` (a RejectCode) says why

One type, many stable codes: the API, CoAP and MQTT adapters report ``code`` as-is and
show ``message``, which names the offending numbers, tensors or operators.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ModelRejected", "RejectCode"]


class RejectCode(StrEnum):
    MALFORMED = "malformed"  # not a well-formed flatbuffer: bad offsets, truncated, ...
    WRONG_IDENTIFIER = "wrong_identifier"  # not "TFL3"
    UNSUPPORTED_SCHEMA = "unsupported_schema"  # schema version other than 3
    TOO_LARGE = "too_large"  # file or a declared count over its cap
    SUBGRAPHS = "subgraphs"  # not exactly one subgraph
    DYNAMIC_SHAPE = "dynamic_shape"  # a shape only known at run time: TFLM cannot plan it
    BAD_REFERENCE = "bad_reference"  # index to a tensor, buffer or opcode out of range
    UNSUPPORTED_DTYPE = "unsupported_dtype"  # an activation of a type TFLM cannot plan


class ModelRejected(ValueError):
    def __init__(self, code: RejectCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
