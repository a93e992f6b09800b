"""The host reference: a quantised model run by LiteRT on float sensor windows.

Inputs are quantised and outputs dequantised with the tensors' own scale and zero point,
as firmware does: ``q = clamp(round_half_away(x / scale) + zero_point)`` in float32 and
``x = scale * (q - zero_point)``. ``device_sim.inference`` is the device's copy of these
few lines (a device never imports the server); a test holds the two to the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from ai_edge_litert.interpreter import (  # type: ignore[import-untyped]
    Interpreter,
    OpResolverType,
)

__all__ = ["HostModel", "QuantParams", "dequantize", "quantize"]

Int8s = npt.NDArray[np.int8]
Float32s = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class QuantParams:
    scale: float
    zero_point: int

    @classmethod
    def of(cls, detail: dict[str, Any]) -> QuantParams:
        scale, zero_point = detail["quantization"]
        if np.dtype(detail["dtype"]) != np.int8 or not scale:
            raise ValueError(f"tensor {detail['name']!r} is not per-tensor int8")
        return cls(float(scale), int(zero_point))


def quantize(values: npt.ArrayLike, params: QuantParams) -> Int8s:
    scaled = np.asarray(values, dtype=np.float32) / np.float32(params.scale)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))
    quantized: Int8s = np.clip(rounded + params.zero_point, -128, 127).astype(np.int8)
    return quantized


def dequantize(values: Int8s, params: QuantParams) -> Float32s:
    offset = values.astype(np.int32) - params.zero_point
    return (offset * np.float32(params.scale)).astype(np.float32)


class HostModel:
    """A fully int8 ``.tflite`` model with one input and one output, batch size 1."""

    def __init__(self, model: bytes) -> None:
        # Without the default XNNPACK delegate: the reference runs TFLite's own kernels.
        self._interpreter = Interpreter(
            model_content=model,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        self._interpreter.allocate_tensors()
        (source,) = self._interpreter.get_input_details()
        (sink,) = self._interpreter.get_output_details()
        self._input, self._output = int(source["index"]), int(sink["index"])
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in source["shape"])
        self.output_shape: tuple[int, ...] = tuple(int(d) for d in sink["shape"])
        self.input_params = QuantParams.of(source)
        self.output_params = QuantParams.of(sink)

    def invoke(self, quantized: Int8s) -> Int8s:
        """Raw int8 outputs, one row per row of ``quantized`` (one window each)."""
        rows = quantized.reshape(-1, *self.input_shape)
        outputs = np.empty((len(rows), *self.output_shape[1:]), dtype=np.int8)
        for i, row in enumerate(rows):
            self._interpreter.set_tensor(self._input, row)
            self._interpreter.invoke()
            outputs[i] = self._interpreter.get_tensor(self._output)[0]
        return outputs

    def predict(self, windows: npt.ArrayLike) -> Float32s:
        """Dequantised outputs for float windows, shaped ``(n, *output_shape[1:])``."""
        flat = np.asarray(windows, dtype=np.float32).reshape(-1, *self.input_shape[1:])
        return dequantize(self.invoke(quantize(flat, self.input_params)), self.output_params)
