"""The synthetic sensors: seeded, and their knobs do what they say (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from fleet.toolkit.sensors import (
    WINDOW,
    FieldConditions,
    SensorProfile,
    Split,
    Task,
    generate,
    random_sensor,
    split,
)


@pytest.mark.parametrize("task", list(Task))
def test_the_same_seed_gives_the_same_windows(task: Task) -> None:
    first, again = generate(task, 20, seed=7), generate(task, 20, seed=7)
    other = generate(task, 20, seed=8)
    assert first.windows.shape == (20, WINDOW, 3) and first.windows.dtype == np.float32
    np.testing.assert_array_equal(first.windows, again.windows)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert not np.array_equal(first.windows, other.windows)


@pytest.mark.parametrize("task", list(Task))
def test_every_class_appears_under_the_default_mix(task: Task) -> None:
    data = generate(task, 400, seed=0)
    assert set(np.unique(data.labels)) == set(range(len(task.labels)))


def test_vibration_training_and_validation_hold_healthy_windows_only() -> None:
    for which in (Split.TRAIN, Split.VALIDATION):
        assert not split(Task.VIBRATION, which, 200, seed=0).labels.any()
    assert split(Task.VIBRATION, Split.REFERENCE, 200, seed=0).labels.any()


def test_class_mix_changes_the_labels_drawn() -> None:
    mix = FieldConditions(class_mix=(0.0, 0.0, 0.0, 1.0))
    assert (generate(Task.GESTURE, 50, seed=0, conditions=mix).labels == 3).all()
    with pytest.raises(ValueError, match="4 probabilities"):
        generate(Task.GESTURE, 5, seed=0, conditions=FieldConditions(class_mix=(0.5, 0.5)))


def test_gain_drift_offset_and_noise_act_on_the_same_draws() -> None:
    clean = generate(Task.VIBRATION, 10, seed=3)
    drifted = generate(
        Task.VIBRATION, 10, seed=3, conditions=FieldConditions(gain_drift=1.3, offset_drift=0.1)
    )
    np.testing.assert_allclose(drifted.windows, 1.3 * clean.windows + 0.1, rtol=1e-6, atol=1e-6)
    noisy = generate(Task.VIBRATION, 10, seed=3, conditions=FieldConditions(noise=0.05))
    assert 0.04 < float(np.std(noisy.windows - clean.windows)) < 0.06


def test_a_sensor_reports_gain_times_truth_plus_offset_and_its_calibration_says_so() -> None:
    sensor = random_sensor(np.random.default_rng(0))
    true = generate(Task.GESTURE, 10, seed=1)
    reported = generate(Task.GESTURE, 10, seed=1, sensor=sensor)
    gain, offset = np.asarray(sensor.gain), np.asarray(sensor.offset)
    np.testing.assert_allclose(reported.windows, gain * true.windows + offset, atol=1e-6)
    calibration = sensor.calibration()
    assert (calibration.gain, calibration.offset) == (sensor.gain, sensor.offset)
    assert SensorProfile().calibration().gain == (1.0, 1.0, 1.0)
