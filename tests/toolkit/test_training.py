"""Training and int8 quantisation of the reference models, and their bundles.

Run with ``pytest -s`` to see float vs int8 accuracy on the held-out reference set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

from fleet.toolkit.bundle import (
    THRESHOLDS_FILE,
    Bundle,
    BundleError,
    evaluate_bundle,
    read_bundle,
)
from fleet.toolkit.sensors import FieldConditions, Task
from fleet.toolkit.thresholds import load_thresholds, thresholds_bytes
from fleet.toolkit.train import TrainedModel

MAX_QUANTISATION_LOSS = 0.02  # int8 within 2 points of float


@pytest.mark.parametrize("task", list(Task))
def test_int8_accuracy_is_within_two_points_of_float(
    task: Task, trained: dict[Task, TrainedModel]
) -> None:
    model = trained[task]
    evaluation = model.evaluation
    print(
        f"\n{task}: float {evaluation.float_accuracy:.1%}, int8 {evaluation.int8_accuracy:.1%}"
        f" on {len(model.reference)} held-out windows; model {len(model.tflite)} bytes"
    )
    assert abs(evaluation.gap) <= MAX_QUANTISATION_LOSS
    assert evaluation.int8_accuracy >= 0.9  # and the models learned something


def test_anomaly_threshold_is_chosen_on_healthy_windows(trained: dict[Task, TrainedModel]) -> None:
    model = trained[Task.VIBRATION]
    assert model.evaluation.float_threshold is not None
    # Two thresholds on the same healthy windows, from float and int8 reconstructions.
    assert model.decision == pytest.approx(model.evaluation.float_threshold, rel=0.2)


@pytest.mark.parametrize("task", list(Task))
def test_a_written_bundle_reads_back_whole(
    task: Task, bundles: dict[Task, Bundle], bundle_dirs: dict[Task, Path]
) -> None:
    assert read_bundle(bundle_dirs[task]) == bundles[task]
    data = (bundle_dirs[task] / THRESHOLDS_FILE).read_bytes()
    assert thresholds_bytes(load_thresholds(data)) == data


def test_a_bundle_whose_thresholds_name_another_model_is_refused(
    bundle_dirs: dict[Task, Path], tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for source in bundle_dirs[Task.GESTURE].iterdir():
        (mixed / source.name).write_bytes(source.read_bytes())
    (mixed / THRESHOLDS_FILE).write_bytes(
        (bundle_dirs[Task.VIBRATION] / THRESHOLDS_FILE).read_bytes()
    )
    with pytest.raises(BundleError, match=THRESHOLDS_FILE):
        read_bundle(mixed)


@pytest.mark.parametrize("task", list(Task))
def test_evaluating_without_drift_reproduces_the_reference(
    task: Task, bundles: dict[Task, Bundle]
) -> None:
    bundle = bundles[task]
    result = evaluate_bundle(bundle)
    assert result.accuracy == bundle.reference.int8_accuracy
    assert result.confusion.sum() == bundle.reference.size
    assert max(result.shifts.values()) == 0.0


def test_gain_drift_breaks_the_anomaly_detector_and_shows_in_every_histogram(
    bundles: dict[Task, Bundle],
) -> None:
    bundle = bundles[Task.VIBRATION]
    drifted = evaluate_bundle(bundle, conditions=FieldConditions(gain_drift=1.3))
    print(f"\nvibration at 1.3x gain: accuracy {drifted.accuracy:.1%}, shifts {drifted.shifts}")
    assert drifted.accuracy < bundle.reference.int8_accuracy - 0.2
    assert min(drifted.shifts.values()) > 0.3
