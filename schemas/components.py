"""Component blobs a device parses itself: the thresholds component and its calibration.

The server stores both as opaque artifacts; a device reads them strictly, with
:func:`parse_component`, after checking their length and sha256 against its manifests.

* :class:`Thresholds` — what a device needs around its model: the decision rule, class
  labels, histogram bin edges for its telemetry and the privacy parameters.
* :class:`SensorCalibration` — what the factory measured about this device's own sensor,
  ``reported = gain * true + offset`` per axis; the device applies the inverse,
  ``(reported - offset) / gain``, before its model sees a window.

Histogram rule, the same for every histogram: with edges ``e_0 < … < e_K`` a value ``v``
counts in bin ``#{i : e_i <= v}``, so a histogram has ``K + 2`` bins: underflow, the
``K`` bins ``[e_{i-1}, e_i)`` and overflow. A device's telemetry names its histograms
after the input summaries, ``confidence`` or ``score`` (the output), ``predicted`` (one
bin per label) and ``latency_us`` (the interpreter's invoke, in microseconds):
:meth:`Thresholds.histogram_sizes`. Latency is an operational metric, not a drift
feature: model-card references never hold it, so drift never tests it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self, TypeVar

from pydantic import Field, ValidationError, model_validator

from schemas.canonical import strict_loads
from schemas.common import Digest, Name, WireModel
from schemas.device import DEFAULT_DAILY_BUDGET, MAX_DAILY_BUDGET, Mechanism
from schemas.errors import DocumentError

__all__ = [
    "CALIBRATION_CAP",
    "DEFAULT_LATENCY_BINS",
    "LATENCY_HISTOGRAM",
    "PREDICTED_HISTOGRAM",
    "THRESHOLDS_CAP",
    "AnomalyDecision",
    "ClassifierDecision",
    "HistogramBins",
    "InputSummary",
    "SensorCalibration",
    "Thresholds",
    "parse_component",
]

PREDICTED_HISTOGRAM = "predicted"
LATENCY_HISTOGRAM = "latency_us"
THRESHOLDS_CAP = 16 * 1024  # python-tuf's cap for small metadata
CALIBRATION_CAP = 1024 * 1024  # what a director manifest may declare for a calibration

Finite = Annotated[float, Field(allow_inf_nan=False)]
Component = TypeVar("Component", bound=WireModel)


class HistogramBins(WireModel):
    edges: tuple[Finite, ...] = Field(min_length=2, max_length=33)
    scale: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _increasing(self) -> Self:
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("bin edges must be strictly increasing")
        if self.scale == "log" and self.edges[0] <= 0:
            raise ValueError("log-scale bin edges must be positive")
        return self

    @property
    def bin_count(self) -> int:
        """Bins including underflow and overflow."""
        return len(self.edges) + 1


# Invoke time in microseconds on a 1-2-5 log ladder: each bin is 2-2.5x the one below,
# so a kernel or clock regression that doubles latency moves a whole bin at any speed.
# 50 us is a small fully connected model on a Cortex-M7 (or the host); 100 ms is as slow
# as a sensor-rate device can afford. Under- and overflow hold the rest.
DEFAULT_LATENCY_BINS = HistogramBins(
    edges=(50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000),
    scale="log",
)


class InputSummary(StrEnum):
    """Per-window summaries of the calibrated input a device histograms."""

    RMS_X = "rms_x"  # root mean square of each axis, DC included
    RMS_Y = "rms_y"
    RMS_Z = "rms_z"
    PEAK = "peak"  # largest absolute sample over every axis


class ClassifierDecision(WireModel):
    """The top-1 class counts only at or above ``min_confidence`` (softmax output)."""

    kind: Literal["classifier"] = "classifier"
    min_confidence: float = Field(ge=0.0, le=1.0)


class AnomalyDecision(WireModel):
    """Anomalous when the mean squared reconstruction error exceeds ``max_score``.

    The error is taken between the calibrated float window and the dequantised output.
    """

    kind: Literal["anomaly"] = "anomaly"
    max_score: Finite = Field(gt=0.0)


class Thresholds(WireModel):
    type: Literal["thresholds"] = "thresholds"
    model_sha256: Digest = Field(description="the model these thresholds were chosen for")
    labels: tuple[Name, ...] = Field(
        min_length=2, max_length=64, description="class names; anomaly: normal, anomaly"
    )
    decision: Annotated[ClassifierDecision | AnomalyDecision, Field(discriminator="kind")]
    inputs: dict[InputSummary, HistogramBins] = Field(min_length=1)
    output: HistogramBins = Field(description="top-1 confidence, or the anomaly score")
    privacy: Mechanism
    window_seconds: int = Field(ge=1, le=7 * 86_400, description="telemetry window length")
    latency: HistogramBins = Field(
        default=DEFAULT_LATENCY_BINS, description="bin edges of the invoke time, microseconds"
    )
    daily_budget: float = Field(
        default=DEFAULT_DAILY_BUDGET,
        gt=0.0,
        le=MAX_DAILY_BUDGET,
        allow_inf_nan=False,
        description="epsilon per device per UTC day the device refuses to pass",
    )

    @model_validator(mode="after")
    def _labels_fit_decision(self) -> Self:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be distinct")
        if isinstance(self.decision, AnomalyDecision) and len(self.labels) != 2:
            raise ValueError("an anomaly decision has two labels: normal, anomaly")
        return self

    @property
    def output_histogram(self) -> str:
        return "confidence" if isinstance(self.decision, ClassifierDecision) else "score"

    def histogram_sizes(self) -> dict[str, int]:
        """Each telemetry histogram's name and number of bins."""
        sizes = {str(name): bins.bin_count for name, bins in self.inputs.items()}
        sizes[self.output_histogram] = self.output.bin_count
        sizes[PREDICTED_HISTOGRAM] = len(self.labels)
        sizes[LATENCY_HISTOGRAM] = self.latency.bin_count
        return sizes


Gain = Annotated[float, Field(gt=0.0, le=100.0, allow_inf_nan=False)]
Offset = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]


class SensorCalibration(WireModel):
    type: Literal["sensor_calibration"] = "sensor_calibration"
    gain: tuple[Gain, Gain, Gain] = (1.0, 1.0, 1.0)
    offset: tuple[Offset, Offset, Offset] = (0.0, 0.0, 0.0)


_CAPS: dict[type[WireModel], int] = {
    Thresholds: THRESHOLDS_CAP,
    SensorCalibration: CALIBRATION_CAP,
}


def parse_component(data: bytes, model_type: type[Component]) -> Component:
    """Parse a component blob strictly, or raise DocumentError saying where it is wrong.

    Oversize input, duplicate keys, NaN and unknown fields are refused.
    """
    what = model_type.__name__
    strict_loads(data, cap=_CAPS[model_type], what=what)
    try:
        return model_type.model_validate_json(data, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or what
        raise DocumentError(f"{what}: {where}: {first['msg']}") from exc
