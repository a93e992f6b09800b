"""On-device inference, as the firmware does it: calibrate, quantise, invoke, dequantise.

A window is ``(samples, 3)`` floats as the sensor reports them. :class:`OnDeviceModel`
undoes the sensor's gain and offset with the device's calibration, summarises the window,
quantises it with the input tensor's scale and zero point, invokes the model, dequantises
the output and applies the thresholds component's decision rule. Each result carries the
histogram bin of everything the device reports in its telemetry, the invoke's latency
(in microseconds, over the thresholds' ``latency`` edges) included.

Two backends run the same bytes:

* ``tflite-micro`` — TensorFlow Lite Micro, the interpreter the firmware runs. Too small
  an arena can take the host process down, so the arena is tried once in a subprocess
  (:func:`probe_arena`, cached per model and size) before the model loads in-process.
* ``litert`` — LiteRT's TFLite kernels (no XNNPACK delegate): the host reference.

An invocation takes well under a millisecond for the reference models, so an asyncio
device calls :meth:`OnDeviceModel.infer` directly; only loading (the arena probe, about
a second) belongs in a thread: :meth:`OnDeviceModel.load`.

The quantisation and decision rules are the device's own copy of ``fleet.toolkit``'s
(a device never imports the server); a test holds the two to the same outputs.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from schemas.components import (
    LATENCY_HISTOGRAM,
    PREDICTED_HISTOGRAM,
    AnomalyDecision,
    ClassifierDecision,
    HistogramBins,
    InputSummary,
    SensorCalibration,
    Thresholds,
)

__all__ = [
    "ARENA_MARGINS",
    "ArenaProbe",
    "ArenaTooSmall",
    "Backend",
    "ModelMismatch",
    "OnDeviceModel",
    "Prediction",
    "QuantParams",
    "dequantize",
    "histogram_bin",
    "probe_arena",
    "quantize",
    "summarise",
]

Int8s = npt.NDArray[np.int8]
Float32s = npt.NDArray[np.float32]

# Headroom over what TFLM's recording allocator reports, tried in turn: kernels' Prepare
# temporaries share the head and are not in the report (docs/models.md). A fully connected
# autoencoder of ~6.4 KB reported needs ~1.5x, a small Conv1D ~1.1x.
ARENA_MARGINS = (1.25, 1.5, 2.0, 3.0)
_PROBE_ARENA = 1024 * 1024
_PROBE_TIMEOUT = 60.0


class Backend(StrEnum):
    TFLM = "tflite-micro"
    LITERT = "litert"


class ModelMismatch(ValueError):
    """The model is not one this device can run with these thresholds."""


class ArenaTooSmall(RuntimeError):
    """TFLM cannot allocate or invoke the model in the given tensor arena."""


@dataclass(frozen=True, slots=True)
class QuantParams:
    scale: float
    zero_point: int

    @classmethod
    def of(cls, detail: dict[str, Any]) -> QuantParams:
        params = detail["quantization_parameters"]
        scales, zero_points = params["scales"], params["zero_points"]
        if np.dtype(detail["dtype"]) != np.int8 or len(scales) != 1 or len(zero_points) != 1:
            raise ModelMismatch("model input and output must be per-tensor int8")
        return cls(float(scales[0]), int(zero_points[0]))


def quantize(values: npt.ArrayLike, params: QuantParams) -> Int8s:
    """``clamp(round_half_away(x / scale) + zero_point)`` in float32, as firmware does."""
    scaled = np.asarray(values, dtype=np.float32) / np.float32(params.scale)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))
    quantized: Int8s = np.clip(rounded + params.zero_point, -128, 127).astype(np.int8)
    return quantized


def dequantize(values: Int8s, params: QuantParams) -> Float32s:
    offset = values.astype(np.int32) - params.zero_point
    return (offset * np.float32(params.scale)).astype(np.float32)


def summarise(window: npt.ArrayLike) -> dict[InputSummary, float]:
    """The input summaries of one calibrated ``(samples, 3)`` window."""
    values = np.asarray(window, dtype=np.float64)[None]
    rms = np.sqrt(np.mean(np.square(values), axis=1))[0]
    return {
        InputSummary.RMS_X: float(rms[0]),
        InputSummary.RMS_Y: float(rms[1]),
        InputSummary.RMS_Z: float(rms[2]),
        InputSummary.PEAK: float(np.max(np.abs(values), axis=(1, 2))[0]),
    }


def histogram_bin(bins: HistogramBins, value: float) -> int:
    """0 is underflow, ``len(edges)`` is overflow: the number of edges <= value."""
    return int(np.searchsorted(np.asarray(bins.edges), value, side="right"))


@dataclass(frozen=True, slots=True)
class ArenaProbe:
    arena_size: int  # the arena the model loads with
    used_bytes: int  # what TFLM's recording allocator reports it used


_PROBE = """
import sys
import numpy as np
from tflite_micro import runtime
model = sys.stdin.buffer.read()
interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[1]))
detail = interpreter.get_input_details(0)
interpreter.set_input(np.zeros(detail["shape"], dtype=detail["dtype"]), 0)
interpreter.invoke()
interpreter.print_allocations()
"""


def _try_arena(model: bytes, arena_size: int) -> int | None:
    """TFLM's reported arena use, or None when the model fails in ``arena_size`` bytes."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(arena_size)],
        input=model,
        capture_output=True,
        timeout=_PROBE_TIMEOUT,
        check=False,
    )
    found = re.search(rb"Arena allocation total (\d+) bytes", result.stderr)
    return int(found.group(1)) if result.returncode == 0 and found else None


@functools.lru_cache(maxsize=64)
def _probe(digest: str, model: bytes, arena_size: int | None) -> ArenaProbe:
    if arena_size is not None:
        used = _try_arena(model, arena_size)
        if used is None:
            raise ArenaTooSmall(f"model {digest[:12]} does not run in {arena_size} bytes")
        return ArenaProbe(arena_size=arena_size, used_bytes=used)
    used = _try_arena(model, _PROBE_ARENA)
    if used is None:
        raise ArenaTooSmall(f"model {digest[:12]} does not run even in {_PROBE_ARENA} bytes")
    for margin in ARENA_MARGINS:
        candidate = -(-int(used * margin) // 16) * 16
        if _try_arena(model, candidate) is not None:
            return ArenaProbe(arena_size=candidate, used_bytes=used)
    return ArenaProbe(arena_size=_PROBE_ARENA, used_bytes=used)


def probe_arena(model: bytes, arena_size: int | None = None) -> ArenaProbe:
    """Check in a subprocess that TFLM loads and invokes ``model`` in ``arena_size`` bytes.

    Without ``arena_size``: the first of TFLM's reported use times ARENA_MARGINS that
    works. Cached per model and size, so a fleet of devices probes a model once.
    """
    return _probe(hashlib.sha256(model).hexdigest(), model, arena_size)


class _Runner(Protocol):
    input_detail: dict[str, Any]
    output_detail: dict[str, Any]

    def invoke(self, quantized: Int8s) -> Int8s: ...


class _TflmRunner:
    def __init__(self, model: bytes, arena_size: int) -> None:
        from tflite_micro import runtime  # type: ignore[import-untyped]

        self._interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
        self.input_detail: dict[str, Any] = self._interpreter.get_input_details(0)
        self.output_detail: dict[str, Any] = self._interpreter.get_output_details(0)

    def invoke(self, quantized: Int8s) -> Int8s:
        self._interpreter.set_input(quantized, 0)
        self._interpreter.invoke()
        output: Int8s = self._interpreter.get_output(0)
        return output


class _LiteRtRunner:
    def __init__(self, model: bytes) -> None:
        from ai_edge_litert import interpreter as litert  # type: ignore[import-untyped]

        self._interpreter = litert.Interpreter(
            model_content=model,
            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        self._interpreter.allocate_tensors()
        (self.input_detail,) = self._interpreter.get_input_details()
        (self.output_detail,) = self._interpreter.get_output_details()

    def invoke(self, quantized: Int8s) -> Int8s:
        self._interpreter.set_tensor(self.input_detail["index"], quantized)
        self._interpreter.invoke()
        output: Int8s = self._interpreter.get_tensor(self.output_detail["index"])
        return output


@dataclass(frozen=True)
class Prediction:
    """What the device concluded about one window."""

    index: int  # top-1 class; for an anomaly detector 1 = anomaly
    label: str | None  # None: a classifier below its min confidence
    confidence: float | None  # classifier: the top-1 probability
    score: float | None  # anomaly detector: the reconstruction error
    output: Int8s  # the raw int8 output tensor
    summaries: dict[InputSummary, float]
    bins: dict[str, int]  # telemetry histogram name -> this window's bin
    latency_s: float  # the interpreter's invoke alone


class OnDeviceModel:
    """A model, its thresholds and this device's calibration, ready to run windows."""

    def __init__(
        self,
        model: bytes,
        thresholds: Thresholds,
        calibration: SensorCalibration = SensorCalibration(),
        *,
        backend: Backend = Backend.TFLM,
        arena_size: int | None = None,
    ) -> None:
        digest = hashlib.sha256(model).hexdigest()
        if thresholds.model_sha256 != digest:
            raise ModelMismatch(
                f"thresholds are for model {thresholds.model_sha256[:12]}, not {digest[:12]}"
            )
        self.thresholds = thresholds
        self.backend = backend
        self.arena: ArenaProbe | None = None
        runner: _Runner
        if backend is Backend.TFLM:
            self.arena = probe_arena(model, arena_size)
            runner = _TflmRunner(model, self.arena.arena_size)
        else:
            runner = _LiteRtRunner(model)
        self._runner = runner
        self._input_shape = tuple(int(d) for d in runner.input_detail["shape"])
        self._input = QuantParams.of(runner.input_detail)
        self._output = QuantParams.of(runner.output_detail)
        self._gain = np.asarray(calibration.gain, dtype=np.float32)
        self._offset = np.asarray(calibration.offset, dtype=np.float32)
        self._check_output(int(np.prod(runner.output_detail["shape"])))

    @classmethod
    async def load(
        cls,
        model: bytes,
        thresholds: Thresholds,
        calibration: SensorCalibration = SensorCalibration(),
        *,
        backend: Backend = Backend.TFLM,
        arena_size: int | None = None,
    ) -> OnDeviceModel:
        """Load off the event loop: the arena probe runs a subprocess."""
        return await asyncio.to_thread(
            cls, model, thresholds, calibration, backend=backend, arena_size=arena_size
        )

    def _check_output(self, outputs: int) -> None:
        decision = self.thresholds.decision
        if isinstance(decision, ClassifierDecision):
            expected, what = len(self.thresholds.labels), "one output per label"
        else:
            expected, what = int(np.prod(self._input_shape)), "the input's size (autoencoder)"
        if outputs != expected:
            raise ModelMismatch(f"the model has {outputs} outputs; expected {what}: {expected}")

    def calibrate(self, window: npt.ArrayLike) -> Float32s:
        """Undo this device's sensor gain and offset: ``(reported - offset) / gain``."""
        reported = np.asarray(window, dtype=np.float32)
        if reported.ndim != 2 or reported.shape[1] != len(self._gain):
            raise ValueError(f"a window is (samples, {len(self._gain)}), not {reported.shape}")
        calibrated: Float32s = (reported - self._offset) / self._gain
        return calibrated

    def infer(self, window: npt.ArrayLike) -> Prediction:
        calibrated = self.calibrate(window)
        quantized = quantize(calibrated.reshape(self._input_shape), self._input)
        started = time.perf_counter()
        raw = self._runner.invoke(quantized)
        latency = time.perf_counter() - started
        output = dequantize(raw, self._output).reshape(-1)
        summaries = summarise(calibrated)
        decision = self.thresholds.decision
        if isinstance(decision, AnomalyDecision):
            score = float(np.mean(np.square(calibrated.reshape(-1) - output), dtype=np.float32))
            index = int(score > decision.max_score)
            return Prediction(
                index=index,
                label=self.thresholds.labels[index],
                confidence=None,
                score=score,
                output=raw,
                summaries=summaries,
                bins=self._bins(summaries, index, score, latency),
                latency_s=latency,
            )
        index, confidence = int(np.argmax(output)), float(np.max(output))
        return Prediction(
            index=index,
            label=self.thresholds.labels[index] if confidence >= decision.min_confidence else None,
            confidence=confidence,
            score=None,
            output=raw,
            summaries=summaries,
            bins=self._bins(summaries, index, confidence, latency),
            latency_s=latency,
        )

    def _bins(
        self,
        summaries: dict[InputSummary, float],
        index: int,
        statistic: float,
        latency_s: float,
    ) -> dict[str, int]:
        thresholds = self.thresholds
        inputs = thresholds.inputs
        bins = {str(name): histogram_bin(b, summaries[name]) for name, b in inputs.items()}
        bins[thresholds.output_histogram] = histogram_bin(thresholds.output, statistic)
        bins[PREDICTED_HISTOGRAM] = index
        bins[LATENCY_HISTOGRAM] = histogram_bin(thresholds.latency, latency_s * 1e6)
        return bins
