"""Fixtures shared by every test package: real processes on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.transports.embedded_broker import Broker, find_mosquitto, running_mosquitto


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow scenarios first (in their collected order, so every xdist worker collects
    the same list): with two workers, a minute-long scenario taken last would leave the
    other worker idle until it ends."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A fresh Mosquitto (tinyfleet's dev config and ACL) on a free port, for one test."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    directory: Path = tmp_path_factory.mktemp("mosquitto")
    with running_mosquitto(directory) as broker:
        yield broker
