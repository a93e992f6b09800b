"""Inspection of the toolkit's own models agrees with LiteRT and with TFLM's arena.

The comparison helpers are ``tests.fleet``'s, which check inspection the same way on
untrained models; here the models are the ones the toolkit ships.
"""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

from device_sim.inference import probe_arena
from fleet.toolkit.bundle import Bundle
from fleet.toolkit.sensors import Task
from tests.fleet.test_tflite_inspection import (
    assert_matches_litert,
    litert_interpreter,
)


@pytest.mark.parametrize("task", list(Task))
def test_ops_match_litert(task: Task, bundles: dict[Task, Bundle]) -> None:
    bundle = bundles[task]
    ops = [d["op_name"] for d in litert_interpreter(bundle.model)._get_ops_details()]
    assert bundle.card.builtin_ops == tuple(sorted(set(ops)))
    assert bundle.card.operator_count == len(ops)
    assert bundle.card.custom_ops == ()


@pytest.mark.parametrize("task", list(Task))
def test_tensor_contract_matches_litert(task: Task, bundles: dict[Task, Bundle]) -> None:
    card = bundles[task].card
    interpreter = litert_interpreter(bundles[task].model)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    assert len(card.inputs) == len(inputs) == 1 and len(card.outputs) == len(outputs) == 1
    for spec, detail in [(card.inputs[0], inputs[0]), (card.outputs[0], outputs[0])]:
        assert_matches_litert(spec, detail)
        assert spec.dtype == "INT8"
        assert -1 not in spec.shape_signature and spec.shape[0] == 1
    assert card.float_tensors == () and card.numeric_kind == "integer"


@pytest.mark.parametrize("task", list(Task))
def test_the_cards_arena_estimate_is_enough_for_tflm(
    task: Task, bundles: dict[Task, Bundle]
) -> None:
    bundle = bundles[task]
    probe = probe_arena(bundle.model, bundle.card.arena.total)
    print(
        f"\n{task}: card arena {bundle.card.arena.total} bytes;"
        f" TFLM runs in it and reports {probe.used_bytes} bytes used"
    )
    assert probe.arena_size == bundle.card.arena.total
