"""The two reference models, trained once per session, and their bundles.

TensorFlow and LiteRT are imported inside the fixtures, so the tests that ask for no
trained model run where the ``ml`` extra is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fleet.toolkit.sensors import Task

if TYPE_CHECKING:
    from fleet.toolkit.bundle import Bundle
    from fleet.toolkit.train import TrainedModel


@pytest.fixture(scope="session")
def trained() -> dict[Task, TrainedModel]:
    """The toolkit's default (seeded) training of each task's reference model."""
    pytest.importorskip("tensorflow")
    from fleet.toolkit.train import train

    return {task: train(task) for task in Task}


@pytest.fixture(scope="session")
def bundles(trained: dict[Task, TrainedModel]) -> dict[Task, Bundle]:
    from fleet.toolkit.bundle import build_bundle

    return {task: build_bundle(model) for task, model in trained.items()}


@pytest.fixture(scope="session")
def bundle_dirs(
    bundles: dict[Task, Bundle], tmp_path_factory: pytest.TempPathFactory
) -> dict[Task, Path]:
    from fleet.toolkit.bundle import write_bundle

    root = tmp_path_factory.mktemp("bundles")
    for task, bundle in bundles.items():
        write_bundle(bundle, root / task)
    return {task: root / task for task in bundles}
