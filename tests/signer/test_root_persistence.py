"""A verified root rotation is kept even when the delivery that carried it is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from signer.acceptance import advance_root
from signer.errors import DirectorExpired, RootRotationRefused
from tests.signer.simulator import RepositorySimulator


def test_keeps_a_verified_rotation_although_the_director_manifest_is_refused(
    sim: RepositorySimulator,
) -> None:
    device = sim.provision("dev-1")
    sim.rotate_root(release=["release-1", "release-2"])
    stale = sim.deliver("dev-1", issued=sim.now - timedelta(days=365))

    advanced = advance_root(device.state, stale.roots)
    with pytest.raises(DirectorExpired):
        device.receive(stale, sim.now)

    assert advanced.root.version == 2
    assert advanced.last_sequence == device.state.last_sequence


def test_advancing_without_newer_roots_returns_the_same_state(sim: RepositorySimulator) -> None:
    device = sim.provision("dev-1")
    assert advance_root(device.state, ()) is device.state


def test_a_rotation_signed_only_by_new_keys_is_not_advanced_to(sim: RepositorySimulator) -> None:
    device = sim.provision("dev-1")
    rogue = sim.rotate_root(root=["root-9"], sign_with=["root-9"])
    with pytest.raises(RootRotationRefused):
        advance_root(device.state, (rogue,))
