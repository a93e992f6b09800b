"""``fleet model …`` end to end, through Typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("ai_edge_litert")

from fleet.toolkit.bundle import MODEL_FILE, read_bundle
from fleet.toolkit.cli import model_app
from fleet.toolkit.sensors import Task

runner = CliRunner()


def test_inspect_prints_the_card(bundle_dirs: dict[Task, Path]) -> None:
    model = bundle_dirs[Task.GESTURE] / MODEL_FILE
    result = runner.invoke(model_app, ["inspect", str(model)])
    assert result.exit_code == 0, result.output
    assert "CONV_2D" in result.output and "arena estimate" in result.output
    as_json = runner.invoke(model_app, ["inspect", str(model), "--json"])
    assert json.loads(as_json.output) == read_bundle(bundle_dirs[Task.GESTURE]).card.model_dump(
        mode="json"
    )


def test_inspect_says_why_a_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.tflite").write_bytes(b"\0" * 64)
    result = runner.invoke(model_app, ["inspect", str(tmp_path / "bad.tflite")])
    assert result.exit_code == 1
    assert "wrong_identifier" in result.output


def test_evaluate_reports_accuracy_and_the_shift_under_drift(
    bundle_dirs: dict[Task, Path],
) -> None:
    bundle = bundle_dirs[Task.VIBRATION]
    result = runner.invoke(model_app, ["evaluate", str(bundle), "--gain-drift", "1.3"])
    assert result.exit_code == 0, result.output
    assert "vibration int8 accuracy on 1000 windows" in result.output
    assert "rms_z" in result.output and "0.990" in result.output


def test_evaluate_refuses_a_directory_that_is_no_bundle(tmp_path: Path) -> None:
    result = runner.invoke(model_app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2
    assert MODEL_FILE in result.output


def test_train_writes_a_bundle_and_prints_both_accuracies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorflow")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    result = runner.invoke(model_app, ["train", "--task", "gesture", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    bundle = read_bundle(tmp_path)
    assert f"{bundle.reference.int8_accuracy:.1%}" in result.output
    assert f"{bundle.reference.float_accuracy:.1%}" in result.output
    assert bundle.card.numeric_kind == "integer"
