"""The thresholds component and the calibration blob, parsed strictly as a device does."""

from __future__ import annotations

import hashlib
import json

import pytest

from fleet.toolkit.sensors import Task
from fleet.toolkit.thresholds import load_thresholds, make_thresholds, thresholds_bytes
from schemas.canonical import model_bytes
from schemas.components import (
    DEFAULT_LATENCY_BINS,
    HistogramBins,
    InputSummary,
    SensorCalibration,
    Thresholds,
    parse_component,
)
from schemas.device import DEFAULT_DAILY_BUDGET
from schemas.errors import DocumentError, DocumentTooLarge, DuplicateKeyError

MODEL = b"not really a model"


def thresholds(task: Task = Task.VIBRATION) -> Thresholds:
    return make_thresholds(
        MODEL,
        task,
        0.002 if task is Task.VIBRATION else 0.5,
        inputs={
            InputSummary.RMS_Z: HistogramBins(edges=(0.9, 1.0, 1.1)),
            InputSummary.PEAK: HistogramBins(edges=(1.0, 1.5, 2.0, 3.0)),
        },
        output=HistogramBins(edges=(1e-4, 1e-3, 1e-2), scale="log"),
    )


def edited(document: Thresholds, edit: dict[str, object]) -> bytes:
    value = json.loads(thresholds_bytes(document))
    value.update(edit)
    return json.dumps(value).encode()


@pytest.mark.parametrize("task", list(Task))
def test_round_trips_through_its_canonical_bytes(task: Task) -> None:
    document = thresholds(task)
    data = thresholds_bytes(document)
    assert load_thresholds(data) == document
    assert thresholds_bytes(load_thresholds(data)) == data
    assert document.model_sha256 == hashlib.sha256(MODEL).hexdigest()
    assert document.labels == task.labels


def test_names_its_telemetry_histograms_and_their_sizes() -> None:
    assert thresholds(Task.VIBRATION).histogram_sizes() == {
        "rms_z": 4,
        "peak": 5,
        "score": 4,
        "predicted": 2,
        "latency_us": 12,
    }
    assert "confidence" in thresholds(Task.GESTURE).histogram_sizes()


def test_carries_the_latency_bins_and_the_daily_budget() -> None:
    document = thresholds()
    assert document.latency == DEFAULT_LATENCY_BINS and document.latency.scale == "log"
    assert document.daily_budget == DEFAULT_DAILY_BUDGET
    data = thresholds_bytes(document)
    assert b'"latency":' in data and b'"daily_budget":768' in data


def test_refuses_an_unknown_field() -> None:
    with pytest.raises(DocumentError, match="firmware_hint: Extra inputs"):
        load_thresholds(edited(thresholds(), {"firmware_hint": 1}))


def test_refuses_an_unknown_field_inside_a_histogram() -> None:
    value = json.loads(thresholds_bytes(thresholds()))
    value["output"]["clip"] = True
    with pytest.raises(DocumentError, match=r"output\.clip"):
        load_thresholds(json.dumps(value).encode())


def test_refuses_an_input_summary_devices_cannot_compute() -> None:
    value = json.loads(thresholds_bytes(thresholds()))
    value["inputs"]["kurtosis"] = {"edges": [1, 2], "scale": "linear"}
    with pytest.raises(DocumentError, match="kurtosis"):
        load_thresholds(json.dumps(value).encode())


def test_refuses_duplicate_keys_and_oversize_documents() -> None:
    data = thresholds_bytes(thresholds())
    with pytest.raises(DuplicateKeyError):
        load_thresholds(data[:-1] + b',"type":"thresholds"}')
    with pytest.raises(DocumentTooLarge):
        load_thresholds(data[:-1] + b',"pad":"' + b"x" * 16384 + b'"}')


@pytest.mark.parametrize(
    "edit",
    [
        {"output": {"edges": [0.2, 0.1], "scale": "linear"}},
        {"output": {"edges": [0.0, 0.1], "scale": "log"}},
        {"labels": ["normal", "anomaly", "other"]},
        {"labels": ["normal", "normal"]},
        {"decision": {"kind": "anomaly", "max_score": -1}},
        {"decision": {"kind": "classifier", "min_confidence": 1.5}},
        {"model_sha256": "not a digest"},
    ],
)
def test_refuses_inconsistent_values(edit: dict[str, object]) -> None:
    with pytest.raises(DocumentError):
        load_thresholds(edited(thresholds(), edit))


def test_calibration_round_trips_and_refuses_unknown_fields() -> None:
    calibration = SensorCalibration(gain=(1.05, 0.97, 1.0), offset=(0.02, -0.01, 0.0))
    data = model_bytes(calibration)
    assert parse_component(data, SensorCalibration) == calibration
    with pytest.raises(DocumentError, match="temperature: Extra inputs"):
        parse_component(data[:-1] + b',"temperature":21}', SensorCalibration)
    with pytest.raises(DocumentError, match="gain"):
        parse_component(data.replace(b"1.05", b"0"), SensorCalibration)
