"""A simulated device runs the model as firmware does and agrees with the host reference.

The host reference is the toolkit's LiteRT path (``fleet.toolkit.host``/``scoring``/
``reference``); the device is ``device_sim.inference`` with TensorFlow Lite Micro, the
interpreter the firmware runs.

Tolerance, TFLM against LiteRT: TFLM requantises with gemmlowp's double rounding
(``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``), LiteRT's kernels
round once, so an int8 activation can differ by one step where a product sits on a
rounding boundary; stacked layers carry that into the output. Measured on the reference
set: the classifier's outputs differ by one step on 0.2 % of windows, the autoencoder's
by at most two steps on 0.5 % of elements; no decision differs. Hence: outputs within
``MAX_STEPS``, nearly all elements exact, and every decision equal. The device's own
code (calibration, quantisation, decision, binning) is held to the host's exactly with
the device's LiteRT backend.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

from device_sim.inference import (
    Backend,
    ModelMismatch,
    OnDeviceModel,
    Prediction,
)
from fleet.toolkit.bundle import Bundle
from fleet.toolkit.host import HostModel, quantize
from fleet.toolkit.reference import input_summaries, observed_histograms
from fleet.toolkit.scoring import Outcomes, outcomes
from fleet.toolkit.sensors import (
    FieldConditions,
    SensorProfile,
    Split,
    Task,
    generate,
    split,
)
from schemas.components import LATENCY_HISTOGRAM, AnomalyDecision, Thresholds

WINDOWS = 50
FIELD_WINDOWS = 1000
MAX_STEPS = 2
MIN_EXACT_ELEMENTS = 0.99


def host_reference(bundle: Bundle, windows: np.ndarray) -> tuple[np.ndarray, Outcomes]:
    host = HostModel(bundle.model)
    raw = host.invoke(quantize(windows.reshape(-1, *host.input_shape[1:]), host.input_params))
    decision = bundle.thresholds.decision
    max_score = decision.max_score if isinstance(decision, AnomalyDecision) else None
    return raw, outcomes(host, windows, max_score=max_score)


def run(device: OnDeviceModel, windows: np.ndarray) -> list[Prediction]:
    return [device.infer(window) for window in windows]


def counts(predictions: list[Prediction], thresholds: Thresholds) -> dict[str, np.ndarray]:
    return {
        name: np.bincount([p.bins[name] for p in predictions], minlength=size)
        for name, size in thresholds.histogram_sizes().items()
    }


def total_variation(observed: np.ndarray, expected: np.ndarray | tuple[float, ...]) -> float:
    """Half the L1 distance between two histograms' proportions."""
    other = np.asarray(expected, dtype=np.float64)
    return 0.5 * float(np.abs(observed / observed.sum() - other / other.sum()).sum())


@pytest.fixture(scope="module")
def devices(bundles: dict[Task, Bundle]) -> dict[tuple[Task, Backend], OnDeviceModel]:
    return {
        (task, backend): OnDeviceModel(bundle.model, bundle.thresholds, backend=backend)
        for task, bundle in bundles.items()
        for backend in Backend
    }


@pytest.mark.parametrize("task", list(Task))
def test_tflm_device_agrees_with_the_host_reference(
    task: Task, bundles: dict[Task, Bundle], devices: dict[tuple[Task, Backend], OnDeviceModel]
) -> None:
    windows = split(task, Split.REFERENCE, WINDOWS, seed=11).windows
    raw, seen = host_reference(bundles[task], windows)
    predictions = run(devices[task, Backend.TFLM], windows)
    on_device = np.stack([p.output[0] for p in predictions]).astype(np.int32)
    steps = np.abs(on_device - raw)
    print(
        f"\n{task}: TFLM vs LiteRT over {WINDOWS} windows: {np.mean(steps == 0):.2%} of"
        f" int8 outputs equal, {np.mean(steps.any(axis=1)):.0%} of windows with a"
        f" difference, largest {steps.max()} step(s)"
    )
    assert steps.max() <= MAX_STEPS
    assert np.mean(steps == 0) >= MIN_EXACT_ELEMENTS
    assert [p.index for p in predictions] == seen.predicted.tolist()


@pytest.mark.parametrize("task", list(Task))
def test_device_code_equals_the_host_code_on_the_same_interpreter(
    task: Task, bundles: dict[Task, Bundle], devices: dict[tuple[Task, Backend], OnDeviceModel]
) -> None:
    windows = split(task, Split.REFERENCE, WINDOWS, seed=12).windows
    raw, seen = host_reference(bundles[task], windows)
    predictions = run(devices[task, Backend.LITERT], windows)
    np.testing.assert_array_equal(np.stack([p.output[0] for p in predictions]), raw)
    assert [p.index for p in predictions] == seen.predicted.tolist()
    statistic = [p.score if p.confidence is None else p.confidence for p in predictions]
    np.testing.assert_array_equal(np.float32(statistic), seen.statistic)
    thresholds = bundles[task].thresholds
    expected = observed_histograms(thresholds, input_summaries(windows), seen)
    observed = counts(predictions, thresholds)
    # Latency is the device's own measurement: the host reference has no such histogram.
    assert observed.keys() - expected.keys() == {LATENCY_HISTOGRAM}
    assert expected.keys() <= observed.keys()
    for name in expected:
        np.testing.assert_array_equal(observed[name], expected[name], err_msg=name)


@pytest.mark.parametrize("task", list(Task))
def test_device_histograms_of_the_reference_set_are_the_reference(
    task: Task, bundles: dict[Task, Bundle], devices: dict[tuple[Task, Backend], OnDeviceModel]
) -> None:
    bundle = bundles[task]
    reference = split(task, Split.REFERENCE, bundle.reference.size, seed=bundle.reference.seed)
    observed = counts(run(devices[task, Backend.LITERT], reference.windows), bundle.thresholds)
    assert LATENCY_HISTOGRAM not in bundle.reference.histograms  # not a drift feature
    for name, histogram in bundle.reference.histograms.items():
        assert tuple(observed[name]) == histogram.counts, name


@pytest.mark.parametrize("backend", list(Backend))
@pytest.mark.parametrize("task", list(Task))
def test_inference_takes_well_under_a_millisecond(
    task: Task, backend: Backend, devices: dict[tuple[Task, Backend], OnDeviceModel]
) -> None:
    windows = split(task, Split.REFERENCE, WINDOWS, seed=13).windows
    predictions = run(devices[task, backend], windows)
    invoke = float(np.median([p.latency_s for p in predictions]))
    print(f"\n{task} on {backend}: invoke {invoke * 1e3:.3f} ms per window (median)")
    assert invoke < 0.005


@pytest.mark.parametrize("task", list(Task))
def test_gain_drift_shifts_the_input_histograms_away_from_the_reference(
    task: Task, bundles: dict[Task, Bundle], devices: dict[tuple[Task, Backend], OnDeviceModel]
) -> None:
    bundle, device = bundles[task], devices[task, Backend.TFLM]
    fresh = generate(task, FIELD_WINDOWS, seed=21)
    drifted = generate(task, FIELD_WINDOWS, seed=21, conditions=FieldConditions(gain_drift=1.3))
    before = counts(run(device, fresh.windows), bundle.thresholds)
    after = counts(run(device, drifted.windows), bundle.thresholds)
    for name in bundle.thresholds.inputs:
        reference = bundle.reference.histograms[name].proportions
        still = total_variation(before[name], reference)
        moved = total_variation(after[name], reference)
        print(f"\n{task} {name}: from the reference {still:.3f}; at 1.3x gain {moved:.3f}")
        assert still < 0.15  # sampling noise of two 1,000-window samples: about 0.06
        assert moved > 2 * still
    for name in ("rms_z", "peak"):
        assert total_variation(after[name], bundle.reference.histograms[name].proportions) > 0.5


@pytest.mark.parametrize("task", list(Task))
def test_calibration_undoes_the_devices_own_sensor_gain_and_offset(
    task: Task, bundles: dict[Task, Bundle], devices: dict[tuple[Task, Backend], OnDeviceModel]
) -> None:
    bundle = bundles[task]
    sensor = SensorProfile(gain=(1.12, 0.9, 1.08), offset=(0.15, -0.1, 0.12))
    true = generate(task, FIELD_WINDOWS, seed=31)
    reported = generate(task, FIELD_WINDOWS, seed=31, sensor=sensor)
    calibrated = OnDeviceModel(bundle.model, bundle.thresholds, sensor.calibration())
    uncalibrated = devices[task, Backend.TFLM]
    for window, reading in zip(true.windows[:20], reported.windows[:20], strict=True):
        np.testing.assert_allclose(calibrated.calibrate(reading), window, atol=1e-5)
    ideal = run(uncalibrated, true.windows)  # what a perfect sensor would give
    fixed = run(calibrated, reported.windows)
    raw = run(uncalibrated, reported.windows)
    assert np.mean([a.index == b.index for a, b in zip(ideal, fixed, strict=True)]) >= 0.99
    perfect = counts(ideal, bundle.thresholds)
    for name in bundle.thresholds.inputs:
        with_calibration = total_variation(counts(fixed, bundle.thresholds)[name], perfect[name])
        without = total_variation(counts(raw, bundle.thresholds)[name], perfect[name])
        print(f"\n{task} {name}: from a perfect sensor {with_calibration:.3f}; raw {without:.3f}")
        assert with_calibration <= 0.01
    raw_z = total_variation(counts(raw, bundle.thresholds)["rms_z"], perfect["rms_z"])
    assert raw_z > 0.5


def test_refuses_thresholds_made_for_another_model(bundles: dict[Task, Bundle]) -> None:
    with pytest.raises(ModelMismatch, match="thresholds are for model"):
        OnDeviceModel(bundles[Task.GESTURE].model, bundles[Task.VIBRATION].thresholds)


def test_refuses_a_model_whose_outputs_do_not_fit_the_labels(bundles: dict[Task, Bundle]) -> None:
    bundle = bundles[Task.GESTURE]
    three_labels = bundle.thresholds.model_copy(update={"labels": ("idle", "shake", "tap")})
    with pytest.raises(ModelMismatch, match="one output per label"):
        OnDeviceModel(bundle.model, three_labels, backend=Backend.LITERT)


async def test_loads_off_the_event_loop(bundles: dict[Task, Bundle]) -> None:
    bundle = bundles[Task.GESTURE]
    device = await OnDeviceModel.load(bundle.model, bundle.thresholds)
    prediction = device.infer(split(Task.GESTURE, Split.REFERENCE, 1, seed=41).windows[0])
    assert prediction.confidence is not None
    assert prediction.label in (*Task.GESTURE.labels, None)
