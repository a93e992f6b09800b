"""Inspection of real TensorFlow-built models, checked against LiteRT and TFLM.

LiteRT (the host reference interpreter) is the truth for operators, shapes, dtypes and
quantisation; the TensorFlow Lite Micro interpreter is the truth for the tensor arena.
TFLM runs in a subprocess: too small an arena may take the whole process down.
Run with ``pytest -s`` to see the measured arena estimate errors.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")
litert = pytest.importorskip("ai_edge_litert.interpreter")

from fleet.domain.model_card import ModelCard, TensorSpec  # noqa: E402
from fleet.inspection import inspect_model  # noqa: E402
from tests.fleet.reference_models import REFERENCE_MODELS  # noqa: E402

ESTIMATE_TOLERANCE = 0.25
BISECTION_STEP = 8

_TFLM_PROBE = """
import sys
from pathlib import Path
from tflite_micro import runtime
model = Path(sys.argv[1]).read_bytes()
runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2])).print_allocations()
"""


@dataclass(frozen=True)
class TflmArena:
    total: int  # what print_allocations() reports: head + tail after allocation
    head: int
    tail: int
    minimum: int  # the smallest arena TFLM accepts, found by bisection


def run_tflm(model: Path, arena_size: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _TFLM_PROBE, str(model), str(arena_size)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def tflm_arena(model: Path) -> TflmArena:
    """What TFLM's RecordingMicroAllocator reports, and the arena it really needs.

    The reported total leaves out the temporaries kernels hold while they prepare, which
    share the head region with the activation plan, so the minimum can be larger.
    """
    result = run_tflm(model, 1024 * 1024)
    assert result.returncode == 0, result.stderr
    found = dict(re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", result.stderr))
    total = int(found["total"])
    fails, works = total // 2, 2 * total
    assert run_tflm(model, fails).returncode != 0
    assert run_tflm(model, works).returncode == 0
    while works - fails > BISECTION_STEP:
        middle = (fails + works) // 2
        if run_tflm(model, middle).returncode == 0:
            works = middle
        else:
            fails = middle
    return TflmArena(total=total, head=int(found["head"]), tail=int(found["tail"]), minimum=works)


@pytest.fixture(scope="module")
def model_files(
    tf_models: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name, data in tf_models.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths


@pytest.fixture(scope="module")
def tflm(model_files: dict[str, Path]) -> dict[str, TflmArena]:
    return {name: tflm_arena(path) for name, path in model_files.items()}


@pytest.fixture(scope="module")
def cards(tf_models: dict[str, bytes]) -> dict[str, ModelCard]:
    return {name: inspect_model(data) for name, data in tf_models.items()}


def litert_interpreter(data: bytes) -> Any:
    # Without the default XNNPACK delegate, which would replace the ops by DELEGATE.
    interpreter = litert.Interpreter(
        model_content=data,
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    return interpreter


def assert_matches_litert(spec: TensorSpec, detail: dict[str, Any]) -> None:
    assert spec.name == detail["name"]
    assert list(spec.shape) == list(detail["shape"])
    assert list(spec.shape_signature) == list(detail["shape_signature"])
    assert spec.dtype == np.dtype(detail["dtype"]).name.upper()
    params = detail["quantization_parameters"]
    assert spec.quantization is not None
    np.testing.assert_array_equal(np.float32(spec.quantization.scale), params["scales"])
    np.testing.assert_array_equal(spec.quantization.zero_point, params["zero_points"])


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_ops_match_litert(
    name: str, tf_models: dict[str, bytes], cards: dict[str, ModelCard]
) -> None:
    interpreter = litert_interpreter(tf_models[name])
    ops = [d["op_name"] for d in interpreter._get_ops_details()]
    assert cards[name].builtin_ops == tuple(sorted(set(ops)))
    assert cards[name].operator_count == len(ops)
    assert cards[name].custom_ops == ()


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_tensor_contract_matches_litert(
    name: str, tf_models: dict[str, bytes], cards: dict[str, ModelCard]
) -> None:
    interpreter = litert_interpreter(tf_models[name])
    card = cards[name]
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    assert len(card.inputs) == len(inputs) and len(card.outputs) == len(outputs)
    for spec, detail in [
        *zip(card.inputs, inputs, strict=True),
        *zip(card.outputs, outputs, strict=True),
    ]:
        assert_matches_litert(spec, detail)
        assert spec.dtype == "INT8"


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_fully_quantised_models_have_no_float_tensor(
    name: str, cards: dict[str, ModelCard]
) -> None:
    assert cards[name].float_tensors == ()
    assert cards[name].numeric_kind == "integer"


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_flash_is_the_file_length(
    name: str, tf_models: dict[str, bytes], cards: dict[str, ModelCard]
) -> None:
    assert cards[name].flash_bytes == len(tf_models[name])


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_arena_estimate_is_within_tolerance_of_tflm(
    name: str, cards: dict[str, ModelCard], tflm: dict[str, TflmArena]
) -> None:
    estimate, truth = cards[name].arena, tflm[name]
    head_error = (estimate.head - truth.head) / truth.head
    total_error = (estimate.total - truth.minimum) / truth.minimum
    reported_error = (estimate.total - truth.total) / truth.total
    print(
        f"\n{name}: head {estimate.head} vs TFLM {truth.head} ({head_error:+.1%}); "
        f"total {estimate.total} (prepare {estimate.prepare_peak}, tail "
        f"{estimate.tail_margin}) vs TFLM minimum {truth.minimum} ({total_error:+.1%}), "
        f"vs reported {truth.total} = {truth.head} + {truth.tail} ({reported_error:+.1%})"
    )
    assert abs(head_error) <= ESTIMATE_TOLERANCE
    assert 0 <= total_error <= 0.10  # a device sized to the estimate allocates
    assert abs(reported_error) <= ESTIMATE_TOLERANCE
