"""Seeded synthetic sensor data: what the reference models learn from and devices read.

Pure NumPy (no TensorFlow): the device simulator imports it to feed its devices. Every
window is 128 samples of a 3-axis accelerometer, in g, as the sensor reports it.

* ``vibration`` (anomaly detection, 1 kHz): a machine turning at about 50 Hz — harmonics
  of the shaft frequency, the same phase on every axis, gravity on z, a little noise.
  Anomalous windows add a bearing fault (resonance bursts at the outer-race frequency)
  or mechanical looseness (half-order and high-order harmonics), of varying severity.
* ``gesture`` (classification, 50 Hz): ``idle``, ``shake``, ``circle`` and ``tap``
  motions on top of gravity with a random tilt.

Field conditions are knobs (:class:`FieldConditions`): a gain drift and an offset the
device's calibration does not know about, extra noise, a changed class mix. A device's
own sensor has a gain and offset per axis (:class:`SensorProfile`); its factory
calibration records them so the device can undo them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.components import SensorCalibration

__all__ = [
    "AXES",
    "WINDOW",
    "Dataset",
    "FieldConditions",
    "SensorProfile",
    "Split",
    "Task",
    "generate",
    "random_sensor",
    "split",
]

AXES = ("x", "y", "z")
WINDOW = 128
_SENSOR_NOISE = 0.02  # g, the accelerometer's own noise floor

Windows = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]


class Task(StrEnum):
    VIBRATION = "vibration"
    GESTURE = "gesture"

    @property
    def labels(self) -> tuple[str, ...]:
        return _LABELS[self]

    @property
    def sample_rate_hz(self) -> float:
        return 1000.0 if self is Task.VIBRATION else 50.0


_LABELS = {
    Task.VIBRATION: ("normal", "anomaly"),
    Task.GESTURE: ("idle", "shake", "circle", "tap"),
}


@dataclass(frozen=True, slots=True)
class FieldConditions:
    """How the field differs from the data the model was trained on.

    ``gain_drift`` multiplies and ``offset_drift`` (g) adds to every axis after the
    sensor's own gain and offset, so calibration does not undo them; ``noise`` is extra
    Gaussian noise (g); ``class_mix`` gives each label's probability (default: uniform).
    """

    gain_drift: float = 1.0
    offset_drift: float = 0.0
    noise: float = 0.0
    class_mix: tuple[float, ...] | None = None

    def mix(self, task: Task) -> Floats:
        count = len(task.labels)
        if self.class_mix is None:
            return np.full(count, 1.0 / count)
        mix = np.asarray(self.class_mix, dtype=np.float64)
        if mix.shape != (count,) or (mix < 0).any() or not np.isclose(mix.sum(), 1.0):
            raise ValueError(f"class_mix must be {count} probabilities summing to 1: {mix}")
        return mix


@dataclass(frozen=True, slots=True)
class SensorProfile:
    """One device's accelerometer: ``reported = gain * true + offset`` per axis."""

    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def calibration(self) -> SensorCalibration:
        """What the factory measured about this sensor, for the device to undo."""
        return SensorCalibration(gain=self.gain, offset=self.offset)


def random_sensor(
    rng: np.random.Generator, *, gain_spread: float = 0.1, offset_spread: float = 0.1
) -> SensorProfile:
    """A sensor as production makes them: gain within ±gain_spread, offset ±offset_spread g."""
    gain = 1.0 + rng.uniform(-gain_spread, gain_spread, 3)
    offset = rng.uniform(-offset_spread, offset_spread, 3)
    return SensorProfile(
        gain=(float(gain[0]), float(gain[1]), float(gain[2])),
        offset=(float(offset[0]), float(offset[1]), float(offset[2])),
    )


@dataclass(frozen=True)
class Dataset:
    task: Task
    windows: Windows  # (n, WINDOW, 3) float32, in g, as the sensor reports them
    labels: npt.NDArray[np.int64]  # (n,) indices into task.labels

    def __len__(self) -> int:
        return len(self.labels)


def generate(
    task: Task,
    n: int,
    *,
    seed: int | tuple[int, ...],
    conditions: FieldConditions = FieldConditions(),
    sensor: SensorProfile = SensorProfile(),
) -> Dataset:
    """``n`` windows of ``task`` as ``sensor`` reports them under ``conditions``.

    The same arguments always give the same windows.
    """
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(task.labels), size=n, p=conditions.mix(task))
    t = np.arange(WINDOW) / task.sample_rate_hz
    true = np.zeros((n, WINDOW, 3))
    for index, make in enumerate(_GENERATORS[task]):
        chosen = np.flatnonzero(labels == index)
        if chosen.size:
            true[chosen] = make(rng, chosen.size, t)
    true += rng.normal(0.0, _SENSOR_NOISE, true.shape)
    reported = np.asarray(sensor.gain) * true + np.asarray(sensor.offset)
    reported = conditions.gain_drift * reported + conditions.offset_drift
    if conditions.noise:
        reported += rng.normal(0.0, conditions.noise, reported.shape)
    return Dataset(task, reported.astype(np.float32), labels.astype(np.int64))


class Split(IntEnum):
    """The toolkit's data sets; each draws from its own seed."""

    TRAIN = 0
    VALIDATION = 1
    REFERENCE = 2  # held out: evaluation and the reference histograms for drift


def split(
    task: Task,
    which: Split,
    n: int,
    *,
    seed: int,
    conditions: FieldConditions | None = None,
) -> Dataset:
    """One of the toolkit's data sets, from factory-calibrated sensors.

    An autoencoder learns what normal is, so vibration's training and validation sets
    hold healthy windows only; a reference set has the task's uniform class mix. With
    ``conditions`` of the same class mix, the same draws come as that field reports them.
    """
    if conditions is None:
        healthy_only = task is Task.VIBRATION and which is not Split.REFERENCE
        conditions = FieldConditions(class_mix=(1.0, 0.0)) if healthy_only else FieldConditions()
    return generate(task, n, seed=(seed, int(which)), conditions=conditions)


def _column(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return values[:, None]


# Vibration: shaft harmonics per axis (x, y, z), in g; y lags x by 90° (a rotating
# imbalance seen by two radial axes), z is axial.
_HARMONICS = np.array([[0.30, 0.25, 0.10], [0.10, 0.08, 0.05], [0.05, 0.04, 0.03]])
_AXIS_LAG = np.array([0.0, -np.pi / 2, np.pi / 4])
_GRAVITY = np.array([0.0, 0.0, 1.0])
_FAULT_AXES = np.array([0.5, 1.0, 0.7])  # a fault shakes the radial y axis most


def _machine(rng: np.random.Generator, n: int, t: Floats) -> tuple[Floats, Floats]:
    """Healthy vibration, and the shaft frequency of each window."""
    shaft = rng.uniform(49.0, 51.0, n)
    load = rng.uniform(0.8, 1.2, (n, 1, 1))
    signal = np.zeros((n, len(t), 3))
    for order, amplitude in enumerate(_HARMONICS, start=1):
        phase = rng.uniform(0, 2 * np.pi, n)
        angle = 2 * np.pi * order * _column(shaft) * t + _column(phase)
        signal += amplitude * np.sin(angle[:, :, None] + order * _AXIS_LAG)
    return load * signal + _GRAVITY, shaft


def _healthy(rng: np.random.Generator, n: int, t: Floats) -> Floats:
    return _machine(rng, n, t)[0]


def _faulty(rng: np.random.Generator, n: int, t: Floats) -> Floats:
    signal, shaft = _machine(rng, n, t)
    severity = _column(rng.uniform(0.1, 1.0, n))
    bearing = rng.random(n) < 0.5
    # Outer-race fault: every 1/BPFO a 300 Hz resonance rings down in ~3 ms.
    bpfo = 3.57 * shaft
    since = np.mod(t - _column(rng.uniform(0, 0.01, n)), _column(1.0 / bpfo))
    ring = np.exp(-since / 0.003) * np.sin(2 * np.pi * _column(rng.uniform(280, 340, n)) * since)
    # Looseness: a half-order harmonic and a comb of high orders.
    angle = 2 * np.pi * _column(shaft) * t + _column(rng.uniform(0, 2 * np.pi, n))
    loose = 0.6 * np.sin(0.5 * angle) + 0.3 * np.sin(5 * angle) + 0.2 * np.sin(7 * angle)
    fault: Floats = np.where(_column(bearing), 0.8 * ring, 0.4 * loose) * severity
    faulty: Floats = signal + fault[:, :, None] * _FAULT_AXES
    return faulty


# Gestures: gravity with a random tilt, then the motion.
def _gravity(rng: np.random.Generator, n: int, t: Floats) -> Floats:
    tilt, turn = rng.uniform(0, 0.3, n), rng.uniform(0, 2 * np.pi, n)
    down = np.stack([np.sin(tilt) * np.cos(turn), np.sin(tilt) * np.sin(turn), np.cos(tilt)], 1)
    return np.repeat(down[:, None, :], len(t), axis=1)


def _idle(rng: np.random.Generator, n: int, t: Floats) -> Floats:
    tremor = rng.uniform(0.0, 0.1, (n, 1)) * np.sin(2 * np.pi * _column(rng.uniform(8, 12, n)) * t)
    return _gravity(rng, n, t) + tremor[:, :, None] * rng.uniform(0, 1, (n, 1, 3))


def _shake(rng: np.random.Generator, n: int, t: Floats) -> Floats:
    frequency, amplitude = rng.uniform(3, 6, n), rng.uniform(0.1, 1.2, n)
    start = rng.integers(0, len(t) // 2, n)
    length = rng.integers(48, len(t), n)
    samples = np.arange(len(t))
    inside = (samples >= _column(start)) & (samples < _column(start + length))
    envelope = np.where(inside, np.sin(np.pi * (samples - _column(start)) / _column(length)), 0)
    motion = _column(amplitude) * envelope * np.sin(2 * np.pi * _column(frequency) * t)
    signal = _gravity(rng, n, t)
    signal[:, :, 0] += motion
    return signal


def _circle(rng: np.random.Generator, n: int, t: Floats) -> Floats:
    frequency, amplitude = rng.uniform(0.6, 1.5, n), rng.uniform(0.05, 0.6, n)
    angle = 2 * np.pi * _column(frequency) * t + _column(rng.uniform(0, 2 * np.pi, n))
    signal = _gravity(rng, n, t)
    signal[:, :, 0] += _column(amplitude) * np.sin(angle)
    signal[:, :, 1] += _column(amplitude) * np.cos(angle)
    return signal


def _tap(rng: np.random.Generator, n: int, t: Floats) -> Floats:
    signal = _gravity(rng, n, t)
    pulse = np.array([1.0, 0.5, -0.3, 0.1])
    for row in range(n):
        for at in rng.choice(len(t) - len(pulse), size=rng.integers(1, 4), replace=False):
            signal[row, at : at + len(pulse), 2] += rng.uniform(0.15, 2.0) * pulse
    return signal


_Generator = Callable[[np.random.Generator, int, Floats], Floats]
_GENERATORS: dict[Task, tuple[_Generator, ...]] = {
    Task.VIBRATION: (_healthy, _faulty),
    Task.GESTURE: (_idle, _shake, _circle, _tap),
}
