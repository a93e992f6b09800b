"""Small reference models of the kind tinyfleet ships, built with TensorFlow.

TensorFlow is passed in, never imported here, so importing this module is free. Weights
are untrained (seeded): inspection and arena planning depend on the graph, not on what
it learned. Every model is converted the standard way: a Keras ``Input`` without a batch
size (``shape_signature`` ``[-1, ...]``, ``shape`` ``[1, ...]``), full-integer int8
quantisation from a representative dataset.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np


def _conv1d_classifier(layers: Any) -> tuple[tuple[int, ...], list[Any]]:
    """Vibration-style classifier: 128 samples x 3 axes -> 4 classes."""
    return (128, 3), [
        layers.Conv1D(8, 5, activation="relu"),
        layers.MaxPooling1D(2),
        layers.Conv1D(16, 3, activation="relu"),
        layers.GlobalAveragePooling1D(),
        layers.Dense(4),
        layers.Softmax(),
    ]


def _dense_autoencoder(layers: Any) -> tuple[tuple[int, ...], list[Any]]:
    """MLPerf-Tiny-style anomaly detector, scaled down: 64 -> 32 -> 8 -> 32 -> 64."""
    return (64,), [
        layers.Dense(32, activation="relu"),
        layers.Dense(8, activation="relu"),
        layers.Dense(32, activation="relu"),
        layers.Dense(64),
    ]


def _ds_cnn(layers: Any) -> tuple[tuple[int, ...], list[Any]]:
    """MLPerf Tiny keyword spotting: 49x10 MFCCs, 64-channel DS-CNN, 12 keywords."""
    body = [layers.Conv2D(64, (10, 4), strides=2, padding="same", use_bias=False)]
    body += [layers.BatchNormalization(), layers.ReLU()]
    for _ in range(4):
        body += [layers.DepthwiseConv2D(3, padding="same", use_bias=False)]
        body += [layers.BatchNormalization(), layers.ReLU()]
        body += [layers.Conv2D(64, 1, use_bias=False), layers.BatchNormalization(), layers.ReLU()]
    return (49, 10, 1), [*body, layers.GlobalAveragePooling2D(), layers.Dense(12), layers.Softmax()]


def _fc_autoencoder(layers: Any) -> tuple[tuple[int, ...], list[Any]]:
    """MLPerf Tiny anomaly detection: 640 -> 128 -> 128 -> 8 -> 128 -> 128 -> 640."""
    body = []
    for units in (128, 128, 8, 128, 128):
        body += [layers.Dense(units), layers.BatchNormalization(), layers.ReLU()]
    return (640,), [*body, layers.Dense(640)]


def _mobilenet(layers: Any) -> tuple[tuple[int, ...], list[Any]]:
    """MobileNet-style person detection on a 48x48 grey image: depthwise separable blocks."""
    body = [layers.Conv2D(8, 3, strides=2, padding="same"), layers.ReLU(6.0)]
    for filters, stride in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1)):
        body += [layers.DepthwiseConv2D(3, strides=stride, padding="same"), layers.ReLU(6.0)]
        body += [layers.Conv2D(filters, 1), layers.ReLU(6.0)]
    return (48, 48, 1), [*body, layers.GlobalAveragePooling2D(), layers.Dense(2), layers.Softmax()]


def _conv1d_vibration(layers: Any) -> tuple[tuple[int, ...], list[Any]]:
    """Vibration fault classifier: 128 samples x 3 axes, three Conv1D stages, 4 classes."""
    return (128, 3), [
        layers.Conv1D(16, 5, activation="relu"),
        layers.MaxPooling1D(2),
        layers.Conv1D(32, 3, activation="relu"),
        layers.MaxPooling1D(2),
        layers.Conv1D(32, 3, activation="relu"),
        layers.GlobalAveragePooling1D(),
        layers.Dense(16, activation="relu"),
        layers.Dense(4),
        layers.Softmax(),
    ]


_ARCHITECTURES: dict[str, Callable[[Any], tuple[tuple[int, ...], list[Any]]]] = {
    "conv1d_classifier": _conv1d_classifier,
    "dense_autoencoder": _dense_autoencoder,
    "ds_cnn": _ds_cnn,
    "fc_autoencoder": _fc_autoencoder,
    "mobilenet": _mobilenet,
    "conv1d_vibration": _conv1d_vibration,
}
REFERENCE_MODELS = ("conv1d_classifier", "dense_autoencoder")
# The architectures whose arena estimate is checked against TFLM's real minimum.
ARENA_MODELS = ("ds_cnn", "fc_autoencoder", "mobilenet", "conv1d_vibration")


def int8_tflite(tf: Any, name: str) -> bytes:
    """Fully int8-quantised ``.tflite`` bytes of reference model ``name``."""
    tf.keras.utils.set_random_seed(0)
    shape, body = _ARCHITECTURES[name](tf.keras.layers)
    # No batch size, as most people write it: TFLM runs the converter's [1, ...] shapes.
    model = tf.keras.Sequential([tf.keras.Input(shape), *body])
    rng = np.random.default_rng(0)

    def representative() -> Any:
        for _ in range(16):
            yield [rng.standard_normal((1, *shape)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # The converter warns that it was given no input statistics: int8 inputs take
        # theirs from the representative dataset, which is what we want.
        warnings.filterwarnings(
            "ignore", message="Statistics for quantized inputs", category=UserWarning
        )
        return bytes(converter.convert())
