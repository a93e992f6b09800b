"""The device's state file: round trip, atomic replacement, and the pinned root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device_sim.state import PendingUpdate, StateCorrupt, StateStore, provision
from schemas import DeviceState
from signer.errors import Refusal
from signer.keys import SigningKey
from signer.signing import sign_envelope
from tests.device_sim.director import Director


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "dev-1" / "state.json")


def test_state_round_trips(store: StateStore) -> None:
    director = Director()
    release = director.release("1.0.0")
    state = provision(
        store,
        device_id="dev-1",
        device_class="nrf52840-kws",
        root=director.root,
        factory=director.factory_slot(release),
    )
    state = state.model_copy(
        update={
            "last_sequence": 4,
            "floors": {"firmware": 2},
            "trial": True,
            "counter": 17,
            "pending": PendingUpdate(
                director=release.envelope,
                release=release.envelope,
                release_digest=release.digest,
                sequence=4,
            ),
        }
    )
    store.save(state)

    loaded = store.load()
    assert loaded == state
    assert loaded.running_digest == release.digest
    assert loaded.trust().last_sequence == 4 and loaded.trust().floor("firmware") == 2
    assert loaded.last_status.state == DeviceState.IDLE


def test_a_crash_before_the_rename_leaves_the_old_file(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    director = Director()
    old = provision(store, device_id="dev-1", device_class="nrf52840-kws", root=director.root)

    def power_cut(*_args: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        store.save(old.model_copy(update={"counter": 99}))
    monkeypatch.undo()

    assert store.load() == old
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["state.json"]


def test_a_temp_file_left_by_a_killed_process_is_ignored_and_removed(store: StateStore) -> None:
    director = Director()
    old = provision(store, device_id="dev-1", device_class="nrf52840-kws", root=director.root)
    stale = store.path.parent / ".state.json.abc123.tmp"
    stale.write_bytes(b'{"half": ')

    assert store.load() == old
    assert not stale.exists()


def test_a_damaged_file_is_reported_not_guessed(store: StateStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(b'{"format": 1, "device_id": "dev-1"}')
    with pytest.raises(StateCorrupt):
        store.load()


def test_provisioning_refuses_a_root_its_own_root_keys_did_not_sign(store: StateStore) -> None:
    director = Director()
    unsigned = director.root.model_copy(update={"signatures": ()})
    forged = sign_envelope(unsigned, [SigningKey.generate()])
    with pytest.raises(Refusal) as refused:
        provision(store, device_id="dev-1", device_class="nrf52840-kws", root=forged)
    assert refused.value.code == "untrusted_key"
    assert not store.exists()
