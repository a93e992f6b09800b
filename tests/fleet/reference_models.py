"""Small reference models of the kind tinyfleet ships, built with TensorFlow.

TensorFlow is passed in, never imported here, so importing this module is free. Weights
are untrained (seeded): inspection and arena planning depend on the graph, not on what
it learned.
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


_ARCHITECTURES: dict[str, Callable[[Any], tuple[tuple[int, ...], list[Any]]]] = {
    "conv1d_classifier": _conv1d_classifier,
    "dense_autoencoder": _dense_autoencoder,
}
REFERENCE_MODELS = tuple(_ARCHITECTURES)


def int8_tflite(tf: Any, name: str) -> bytes:
    """Fully int8-quantised ``.tflite`` bytes of reference model ``name``."""
    tf.keras.utils.set_random_seed(0)
    shape, body = _ARCHITECTURES[name](tf.keras.layers)
    # A fixed batch of 1: MCU models have static shapes (no -1 in shape_signature).
    model = tf.keras.Sequential([tf.keras.Input(shape, batch_size=1), *body])
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
