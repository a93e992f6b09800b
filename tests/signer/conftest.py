"""Fixtures for the device acceptance tests: keys made once, a simulator and a device."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.signer.simulator import START, KeyPool, RepositorySimulator, SimulatedDevice


@pytest.fixture(scope="session")
def keys() -> KeyPool:
    return KeyPool()


@pytest.fixture
def now() -> datetime:
    return START


@pytest.fixture
def sim(keys: KeyPool, now: datetime) -> RepositorySimulator:
    return RepositorySimulator(keys, now=now)


@pytest.fixture
def device(sim: RepositorySimulator) -> SimulatedDevice:
    return sim.provision("dev-1")
