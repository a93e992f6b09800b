"""Real TensorFlow models, built once per session, for the inspection tests.

TensorFlow is imported inside the fixtures, so tests that do not ask for these models run
where the ``ml`` extra is absent.
"""

from __future__ import annotations

import pytest

from tests.fleet.reference_models import ARENA_MODELS, REFERENCE_MODELS, int8_tflite


@pytest.fixture(scope="session")
def tf_models() -> dict[str, bytes]:
    """Fully int8-quantised ``.tflite`` bytes per name in REFERENCE_MODELS."""
    tf = pytest.importorskip("tensorflow")
    return {name: int8_tflite(tf, name) for name in REFERENCE_MODELS}


@pytest.fixture(scope="session")
def arena_models() -> dict[str, bytes]:
    """Fully int8-quantised ``.tflite`` bytes per name in ARENA_MODELS."""
    tf = pytest.importorskip("tensorflow")
    return {name: int8_tflite(tf, name) for name in ARENA_MODELS}
