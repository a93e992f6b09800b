"""Train, quantise and evaluate the two reference models with TensorFlow (the ``ml`` extra).

* ``gesture``: a Conv1D classifier, 128 x 3 samples -> 4 classes (softmax).
* ``vibration``: a dense autoencoder, 384 samples -> 384; a window's anomaly score is
  its mean squared reconstruction error, anomalous above a threshold taken on held-out
  healthy windows (``HEALTHY_QUANTILE``), separately for the float and the int8 model.

Both are tiny (seconds to train on two cores), seeded, and quantised to full int8 (int8
input and output, ranges from a representative set of training windows) with a batch
size of 1: MCU models have static shapes. Accuracy is measured on the held-out
reference set for the float model and for the int8 model as LiteRT runs it.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf  # type: ignore[import-untyped]

from fleet.toolkit.host import HostModel
from fleet.toolkit.scoring import anomaly_scores, top1
from fleet.toolkit.sensors import WINDOW, Dataset, Split, Task, split

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "HEALTHY_QUANTILE",
    "Evaluation",
    "TrainedModel",
    "TrainingConfig",
    "train",
]

DEFAULT_MIN_CONFIDENCE = 0.5  # a gesture below it is reported as no gesture
HEALTHY_QUANTILE = 0.99  # of held-out healthy scores: about 1 % false alarms
REPRESENTATIVE_WINDOWS = 256
BATCH_SIZE = 32


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    seed: int = 0
    train_size: int = 2000
    validation_size: int = 500
    reference_size: int = 1000


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Accuracy on the held-out reference set (for vibration: detection accuracy)."""

    float_accuracy: float
    int8_accuracy: float
    float_threshold: float | None = None  # the float model's anomaly threshold

    @property
    def gap(self) -> float:
        """How much quantisation cost, in accuracy (positive: int8 is worse)."""
        return self.float_accuracy - self.int8_accuracy


@dataclass(frozen=True)
class TrainedModel:
    task: Task
    config: TrainingConfig
    tflite: bytes
    decision: float  # the int8 model's min confidence (gesture) or score threshold
    evaluation: Evaluation
    reference: Dataset


def train(task: Task, config: TrainingConfig = TrainingConfig()) -> TrainedModel:
    """Train ``task``'s reference model, quantise it and measure what quantisation cost."""
    tf.keras.utils.set_random_seed(config.seed)
    training = split(task, Split.TRAIN, config.train_size, seed=config.seed)
    reference = split(task, Split.REFERENCE, config.reference_size, seed=config.seed)
    spec = _SPECS[task]
    body = spec.layers(tf.keras.layers)
    model = tf.keras.Sequential([tf.keras.Input(spec.input_shape), *body])
    # Decayed to nothing by the last step: the weights quantised are not a random
    # point of a learning rate's last oscillation.
    steps = spec.epochs * -(-len(training) // BATCH_SIZE)
    schedule = tf.keras.optimizers.schedules.CosineDecay(spec.learning_rate, steps)
    model.compile(tf.keras.optimizers.Adam(schedule), loss=spec.loss)
    inputs = training.windows.reshape(len(training), *spec.input_shape)
    targets = inputs if task is Task.VIBRATION else training.labels
    model.fit(inputs, targets, epochs=spec.epochs, batch_size=BATCH_SIZE, verbose=0)
    tflite = _int8_tflite(spec.input_shape, body, inputs[:REPRESENTATIVE_WINDOWS])
    host = HostModel(tflite)
    if task is Task.GESTURE:
        evaluation = _evaluate_classifier(model, host, reference)
        decision = DEFAULT_MIN_CONFIDENCE
    else:
        validation = split(task, Split.VALIDATION, config.validation_size, seed=config.seed)
        evaluation, decision = _evaluate_autoencoder(model, host, validation, reference)
    return TrainedModel(task, config, tflite, decision, evaluation, reference)


@dataclass(frozen=True)
class _Spec:
    input_shape: tuple[int, ...]
    layers: Callable[[Any], list[Any]]
    loss: str
    learning_rate: float
    epochs: int


def _conv1d_classifier(layers: Any) -> list[Any]:
    return [
        layers.Conv1D(8, 5, activation="relu"),
        layers.MaxPooling1D(2),
        layers.Conv1D(16, 3, activation="relu"),
        # Max, not average: a tap is a few samples, which an average dilutes below
        # the int8 grid (average pooling cost up to 11 points of accuracy in int8).
        layers.GlobalMaxPooling1D(),
        layers.Dense(len(Task.GESTURE.labels)),
        layers.Softmax(),
    ]


def _dense_autoencoder(layers: Any) -> list[Any]:
    return [
        layers.Dense(64, activation="relu"),
        layers.Dense(16),  # a linear bottleneck: ReLU here left units dead on some seeds
        layers.Dense(64, activation="relu"),
        layers.Dense(WINDOW * 3),
    ]


_SPECS = {
    Task.GESTURE: _Spec(
        (WINDOW, 3), _conv1d_classifier, "sparse_categorical_crossentropy", 1e-2, 20
    ),
    Task.VIBRATION: _Spec((WINDOW * 3,), _dense_autoencoder, "mse", 3e-3, 20),
}


def _int8_tflite(shape: tuple[int, ...], body: list[Any], representative: np.ndarray) -> bytes:
    # The trained layers again, behind a batch-1 input: no -1 in the shape signature.
    exported = tf.keras.Sequential([tf.keras.Input(shape, batch_size=1), *body])

    def windows() -> Iterator[list[npt.NDArray[np.float32]]]:
        for window in representative:
            yield [window[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(exported)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = windows
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    # Keras prints the temporary SavedModel's signature to stdout; nobody asked for it.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # int8 inputs take their statistics from the representative set, as meant.
        warnings.filterwarnings(
            "ignore", message="Statistics for quantized inputs", category=UserWarning
        )
        return bytes(converter.convert())


def _accuracy(predicted: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    return float(np.mean(predicted == truth))


def _evaluate_classifier(model: Any, host: HostModel, reference: Dataset) -> Evaluation:
    float_classes, _ = top1(model.predict(reference.windows, batch_size=256, verbose=0))
    int8_classes, _ = top1(host.predict(reference.windows))
    return Evaluation(
        float_accuracy=_accuracy(float_classes, reference.labels),
        int8_accuracy=_accuracy(int8_classes, reference.labels),
    )


def _evaluate_autoencoder(
    model: Any, host: HostModel, validation: Dataset, reference: Dataset
) -> tuple[Evaluation, float]:
    def float_scores(data: Dataset) -> npt.NDArray[np.float32]:
        flat = data.windows.reshape(len(data), -1)
        return anomaly_scores(flat, model.predict(flat, batch_size=256, verbose=0))

    def int8_scores(data: Dataset) -> npt.NDArray[np.float32]:
        return anomaly_scores(data.windows, host.predict(data.windows))

    float_threshold = float(np.quantile(float_scores(validation), HEALTHY_QUANTILE))
    int8_threshold = float(np.quantile(int8_scores(validation), HEALTHY_QUANTILE))
    float_flags = (float_scores(reference) > float_threshold).astype(np.int64)
    int8_flags = (int8_scores(reference) > int8_threshold).astype(np.int64)
    evaluation = Evaluation(
        float_accuracy=_accuracy(float_flags, reference.labels),
        int8_accuracy=_accuracy(int8_flags, reference.labels),
        float_threshold=float_threshold,
    )
    return evaluation, int8_threshold
