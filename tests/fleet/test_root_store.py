"""The server's root chain on disk: what it admits, and what it says when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.root_store import RootStore, RootStoreError
from tests.signer.simulator import START, KeyPool, RepositorySimulator


@pytest.fixture
def sim() -> RepositorySimulator:
    sim = RepositorySimulator(KeyPool(), now=START)
    for _ in range(3):
        sim.rotate_root()
    return sim  # roots v1..v4, each signed by the one before


def test_a_chain_is_admitted_in_order_and_kept_across_a_restart(
    sim: RepositorySimulator, tmp_path: Path
) -> None:
    store = RootStore(tmp_path)
    for root in sim.roots:
        store.add(root.to_bytes())

    reopened = RootStore(tmp_path)
    reopened.add(sim.roots[0].to_bytes())  # FLEET_ROOT_PATH still naming v1: a no-op

    assert reopened.trusted().version == 4
    assert [e.payload for e in reopened.newer_than_first()] == [r.payload for r in sim.roots[1:]]


def test_a_chain_started_from_a_later_root_takes_that_root_again(
    sim: RepositorySimulator, tmp_path: Path
) -> None:
    RootStore(tmp_path).add(sim.roots[3].to_bytes())

    reopened = RootStore(tmp_path)
    reopened.add(sim.roots[3].to_bytes())

    assert reopened.trusted().version == 4


def test_an_older_root_than_the_chain_holds_says_how_to_restore_the_chain(
    sim: RepositorySimulator, tmp_path: Path
) -> None:
    RootStore(tmp_path).add(sim.roots[3].to_bytes())

    with pytest.raises(RootStoreError) as refused:
        RootStore(tmp_path).add(sim.roots[0].to_bytes())

    message = str(refused.value)
    assert "older than the oldest root this server holds (v4" in message
    assert "v1..v4" in message
    assert "other content" not in message


def test_a_second_root_of_a_held_version_is_refused_naming_the_next_version(
    sim: RepositorySimulator, tmp_path: Path
) -> None:
    store = RootStore(tmp_path)
    for root in sim.roots[:2]:
        store.add(root.to_bytes())
    other_v2 = RepositorySimulator(KeyPool(), now=START)
    other_v2.rotate_root()

    with pytest.raises(RootStoreError, match=r"differs from the v2 .* must be v3"):
        store.add(other_v2.roots[1].to_bytes())
