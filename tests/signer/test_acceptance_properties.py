"""Invariants of the acceptance rules over random runs of honest and attacked deliveries.

Whatever arrives, in whatever order: the accepted sequence never goes down, floors never
go down, a refused delivery changes nothing, and exactly the honest deliveries that meet
the floors are accepted.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from schemas import ComponentKind, Delivery, Role
from signer.acceptance import commit_installed
from signer.errors import Refusal
from tests.signer.simulator import (
    DIRECTOR_LIFETIME,
    START,
    KeyPool,
    RepositorySimulator,
    SimulatedDevice,
    tamper,
    trust_snapshot,
)

ATTACKS = (
    "tampered",
    "too_few_keys",
    "wrong_role",
    "wrong_device",
    "wrong_class",
    "replay",
    "expired",
    "mix_and_match",
    "unknown_director",
)
RELEASE_KEYS = [f"release-{i}" for i in range(1, 6)]
FLOORED = (ComponentKind.FIRMWARE, ComponentKind.MODEL)  # the kinds a step draws versions for

deliveries = st.fixed_dictionaries(
    {
        "attack": st.sampled_from((None, None, *ATTACKS)),
        "firmware": st.integers(0, 4),
        "model": st.integers(0, 4),
        "confirm": st.booleans(),
        "minutes": st.integers(0, 20),
    }
)
rotations = st.fixed_dictionaries(
    {"rotate_release_keys": st.lists(st.sampled_from(RELEASE_KEYS), min_size=2, unique=True)}
)


def bump_version(payload: dict[str, Any]) -> None:
    payload["version"] += "-evil"


def build(
    sim: RepositorySimulator, attack: str | None, step: dict[str, Any], accepted: list[Delivery]
) -> Delivery:
    """A delivery for ``dev-1`` carrying the step's release, attacked as ``attack`` says."""
    manifest = sim.release(
        "1.0.0", security_version=0, per_kind={kind: step[kind.value] for kind in FLOORED}
    )
    release = sim.sign_release(manifest)
    match attack:
        case "replay":
            return accepted[-1]
        case "tampered":
            return sim.deliver("dev-1", tamper(release, bump_version))
        case "too_few_keys":
            return sim.deliver("dev-1", sim.sign_release(manifest, sim.role_keys[Role.RELEASE][:1]))
        case "wrong_role":
            return sim.deliver("dev-1", sim.sign_release(manifest, ["director-1"]))
        case "wrong_device":
            return sim.deliver("dev-2", release)
        case "wrong_class":
            return sim.deliver("dev-1", sim.sign_release(sim.release(device_class="esp32s3")))
        case "expired":
            return sim.deliver("dev-1", release, issued=sim.now - DIRECTOR_LIFETIME)
        case "mix_and_match":
            other = sim.sign_release(sim.release("0.9.0", security_version=0))
            return sim.deliver("dev-1", release).model_copy(update={"release": other})
        case "unknown_director":
            return sim.deliver("dev-1", release, signers=["attacker"])
    return sim.deliver("dev-1", release)


def should_accept(device: SimulatedDevice, attack: str | None, step: dict[str, Any]) -> bool:
    honest = attack is None
    return honest and all(step[kind.value] >= device.state.floor(kind.value) for kind in FLOORED)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.one_of(deliveries, rotations), max_size=12))
def test_random_deliveries_never_weaken_a_device(
    keys: KeyPool, steps: list[dict[str, Any]]
) -> None:
    sim = RepositorySimulator(keys, now=START)
    device = sim.provision("dev-1")
    accepted: list[Delivery] = []
    for step in steps:
        if "rotate_release_keys" in step:
            sim.rotate_root(release=step["rotate_release_keys"])
            continue
        sim.now += timedelta(minutes=step["minutes"])
        attack = None if step["attack"] == "replay" and not accepted else step["attack"]
        delivery = build(sim, attack, step, accepted)
        before, snapshot = device.state, trust_snapshot(device.state)
        expected = should_accept(device, attack, step)
        try:
            update = device.receive(delivery, sim.now)
        except Refusal as refusal:
            event(f"{attack} refused: {refusal.code}")
            assert not expected, step
            assert device.state is before
            assert trust_snapshot(device.state) == snapshot
            continue
        event(f"{attack} accepted")
        assert expected, step
        assert device.state.last_sequence > before.last_sequence
        assert device.state.root.version >= before.root.version
        assert device.state.floors == before.floors
        accepted.append(delivery)
        if step["confirm"]:
            device.confirm(update.release)
            for kind in FLOORED:
                assert device.state.floor(kind) == max(before.floor(kind), step[kind.value])


security_versions = st.fixed_dictionaries({kind: st.integers(0, 9) for kind in ComponentKind})


@given(floors=security_versions, installed=security_versions)
def test_confirming_any_release_never_lowers_a_floor(
    keys: KeyPool, floors: dict[ComponentKind, int], installed: dict[ComponentKind, int]
) -> None:
    sim = RepositorySimulator(keys, now=START)
    state = replace(sim.provision("dev-1").state, floors={k.value: v for k, v in floors.items()})

    raised = commit_installed(state, sim.release(security_version=0, per_kind=installed))

    assert raised.floors == {k.value: max(floors[k], installed[k]) for k in ComponentKind}
    assert state.floors == {k.value: v for k, v in floors.items()}
