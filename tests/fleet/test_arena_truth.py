"""The arena estimate against TFLM's real minimum arena, on models made the standard way.

Each model is a Keras ``Input`` without a batch size, converted with the default
``TFLiteConverter.from_keras_model`` path to full int8. Inspection must accept it, and
a device sized to the card's estimate must allocate and invoke: the estimate may not be
below the smallest arena the ``tflite_micro`` interpreter accepts, nor more than 10 %
above it. Too small an arena can take the interpreter's process down, so every size is
tried in a subprocess; the minimum is found by bisection, to the byte.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

from fleet.inspection import inspect_model
from tests.fleet.reference_models import ARENA_MODELS

MAX_OVERESTIMATE = 0.10

_RUN = """
import sys
import numpy as np
from tflite_micro import runtime
interpreter = runtime.Interpreter.from_bytes(sys.stdin.buffer.read(), arena_size=int(sys.argv[1]))
detail = interpreter.get_input_details(0)
interpreter.set_input(np.zeros(detail["shape"], dtype=detail["dtype"]), 0)
interpreter.invoke()
"""


def runs_in(model: bytes, arena_size: int) -> bool:
    """True when TFLM allocates and invokes ``model`` (one input) in ``arena_size`` bytes."""
    result = subprocess.run(
        [sys.executable, "-c", _RUN, str(arena_size)],
        input=model,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


def minimum_arena(model: bytes, guess: int) -> int:
    """The smallest arena TFLM runs ``model`` in, searched from ``guess`` outwards."""
    works, fails = guess, guess * 10 // 11
    while not runs_in(model, works):
        assert works < 64 * guess, f"TFLM runs the model in no arena up to {works} bytes"
        fails, works = works, works * 2
    while runs_in(model, fails):
        works, fails = fails, fails // 2
    while works - fails > 1:
        middle = (works + fails) // 2
        if runs_in(model, middle):
            works = middle
        else:
            fails = middle
    return works


@pytest.mark.parametrize("name", ARENA_MODELS)
def test_estimate_is_at_least_tflms_minimum_and_at_most_ten_percent_above(
    name: str, arena_models: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    card = inspect_model(arena_models[name])
    assert card.inputs[0].shape_signature[0] == -1 and card.inputs[0].shape[0] == 1
    estimate = card.arena.total
    truth = minimum_arena(arena_models[name], estimate)
    error = (estimate - truth) / truth
    with capsys.disabled():
        print(
            f"\n{name}: arena estimate {estimate} B (head {card.arena.head}, temporaries "
            f"{card.arena.prepare_peak}, tail {card.arena.tail_margin}); TFLM minimum "
            f"{truth} B; error {error:+.2%}"
        )
    assert 0 <= error <= MAX_OVERESTIMATE
