"""Attacks on a device's acceptance rules, one per test, served by the repository simulator.

Each attack asserts the exact refusal, its stable code, and that the device kept the
very trust state it had before (python-tuf's ``test_updater_top_level_update.py`` habit).
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from schemas import (
    Action,
    Component,
    ComponentKind,
    Envelope,
    ReleaseManifest,
    Role,
    RootMetadata,
    decode_payload,
)
from signer import errors
from signer.errors import (
    ArtifactDigestMismatch,
    ArtifactTooLong,
    ArtifactTooShort,
    DirectorExpired,
    Refusal,
    ReleaseDigestMismatch,
    RootExpired,
    RootRotationRefused,
    RootVersionError,
    SecurityFloorViolation,
    SequenceReplayed,
    SignatureInvalid,
    SignatureRefusal,
    ThresholdNotMet,
    UntrustedKey,
    WrongDevice,
    WrongDeviceClass,
    WrongRoleKey,
)
from tests.signer.simulator import (
    DIRECTOR_LIFETIME,
    ROOT_LIFETIME,
    KeyPool,
    RepositorySimulator,
    SimulatedDevice,
    tamper,
    trust_snapshot,
)

# Every refusal an attack below ends in, with the code a device reports for it.
ATTACK_CODES: dict[type[Refusal], str] = {
    SignatureInvalid: "signature_invalid",
    ThresholdNotMet: "threshold_not_met",
    WrongRoleKey: "wrong_role_key",
    UntrustedKey: "untrusted_key",
    WrongDevice: "wrong_device",
    WrongDeviceClass: "wrong_device_class",
    SequenceReplayed: "sequence_replayed",
    DirectorExpired: "director_expired",
    SecurityFloorViolation: "below_security_floor",
    ReleaseDigestMismatch: "release_digest_mismatch",
    RootRotationRefused: "root_rotation_refused",
    RootVersionError: "root_version",
    RootExpired: "root_expired",
    ArtifactTooLong: "artifact_too_long",
    ArtifactTooShort: "artifact_too_short",
    ArtifactDigestMismatch: "artifact_digest_mismatch",
}


@contextmanager
def refused(
    device: SimulatedDevice, refusal: type[Refusal]
) -> Iterator[pytest.ExceptionInfo[Refusal]]:
    """The body fails with exactly ``refusal`` and the device keeps its trust state untouched."""
    before, snapshot = device.state, trust_snapshot(device.state)
    with pytest.raises(refusal) as caught:
        yield caught
    assert type(caught.value) is refusal
    assert caught.value.code == ATTACK_CODES[refusal]
    assert device.state is before
    assert trust_snapshot(device.state) == snapshot


def release_of(envelope: Envelope) -> ReleaseManifest:
    return decode_payload(envelope, ReleaseManifest)


# -- refusal codes ---------------------------------------------------------------------


def test_each_attack_refusal_has_its_own_stable_code() -> None:
    assert {refusal: refusal.code for refusal in ATTACK_CODES} == ATTACK_CODES
    assert len(set(ATTACK_CODES.values())) == len(ATTACK_CODES)


def test_no_two_refusal_classes_share_a_code() -> None:
    refusals = [getattr(errors, name) for name in errors.__all__]
    codes = [refusal.code for refusal in refusals]
    assert len(set(codes)) == len(codes)


# -- honest updates --------------------------------------------------------------------


def test_accepts_a_valid_delivery_and_advances_the_sequence(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    delivery = sim.deliver("dev-1")

    accepted = device.receive(delivery, sim.now)

    assert accepted.director.sequence == 1
    assert device.state is accepted.state
    assert device.state.last_sequence == 1
    assert device.state.floors == {}
    for component in accepted.release.components:
        served = sim.artifacts[component.sha256]
        assert device.download(component, sim.serve(component.sha256)) == served


def test_walks_a_root_rotation_and_trusts_the_new_release_keys(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    sim.rotate_root(
        root=["root-2"],
        release=["release-4", "release-5", "release-6"],
        director=["director-2"],
    )
    release = sim.sign_release(sim.release("2.0.0"), ["release-5", "release-6"])

    accepted = device.receive(sim.deliver("dev-1", release), sim.now)

    assert accepted.release.version == "2.0.0"
    assert device.state.root.version == 2
    assert device.state.root == decode_payload(sim.roots[1], RootMetadata)


def test_floors_rise_only_when_the_installed_release_is_confirmed(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    old = sim.sign_release(sim.release("1.0.0", security_version=1))
    new = sim.sign_release(sim.release("2.0.0", security_version=3))
    device.receive(sim.deliver("dev-1", new), sim.now)
    assert device.state.floors == {}
    device.receive(sim.deliver("dev-1", old, action=Action.ROLLBACK), sim.now)

    device.confirm(release_of(new))

    assert device.state.floors == {kind.value: 3 for kind in ComponentKind}
    with refused(device, SecurityFloorViolation):
        device.receive(sim.deliver("dev-1", old), sim.now)


def test_accepts_a_rollback_to_an_older_release_that_meets_the_floor(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    old = sim.sign_release(sim.release("1.0.0", security_version=2))
    new = sim.sign_release(sim.release("1.1.0", security_version=2))
    device.receive(sim.deliver("dev-1", new), sim.now)
    device.confirm(release_of(new))

    accepted = device.receive(sim.deliver("dev-1", old, action=Action.ROLLBACK), sim.now)

    assert accepted.director.action is Action.ROLLBACK
    assert accepted.release.version == "1.0.0"
    assert device.state.last_sequence == 2


# -- release signatures ----------------------------------------------------------------


def test_refuses_a_release_tampered_after_signing(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    evil = sim.add_artifact(b"firmware with a backdoor")

    def swap_firmware(payload: dict[str, Any]) -> None:
        payload["components"][0]["sha256"] = evil

    # The director (a compromised server) names the tampered bytes, so only the release
    # signatures stand in the way.
    release = tamper(sim.sign_release(sim.release()), swap_firmware)

    with refused(device, SignatureInvalid):
        device.receive(sim.deliver("dev-1", release), sim.now)


def test_refuses_a_release_signed_by_too_few_release_keys(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    release = sim.sign_release(sim.release(), ["release-1"])

    with refused(device, ThresholdNotMet) as caught:
        device.receive(sim.deliver("dev-1", release), sim.now)

    assert isinstance(caught.value, SignatureRefusal)
    assert (caught.value.valid, caught.value.threshold) == (1, 2)


@pytest.mark.parametrize(
    "signers", [["director-1"], ["root-1"], ["director-1", "root-1"]], ids="+".join
)
def test_refuses_a_release_signed_by_keys_of_another_role(
    sim: RepositorySimulator, device: SimulatedDevice, signers: list[str]
) -> None:
    release = sim.sign_release(sim.release(), signers)

    with refused(device, WrongRoleKey):
        device.receive(sim.deliver("dev-1", release), sim.now)


def test_refuses_a_release_signed_by_a_key_revoked_in_a_root_rotation(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    sim.rotate_root(release=["release-1", "release-2"])
    release = sim.sign_release(sim.release(), ["release-1", "release-3"])

    with refused(device, UntrustedKey):
        device.receive(sim.deliver("dev-1", release), sim.now)


# -- director manifests ----------------------------------------------------------------


def test_refuses_a_director_manifest_signed_by_a_release_key(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    delivery = sim.deliver("dev-1", signers=["release-1"])

    with refused(device, WrongRoleKey) as caught:
        device.receive(delivery, sim.now)

    assert isinstance(caught.value, SignatureRefusal)
    assert caught.value.role == "director"


def test_refuses_a_director_manifest_signed_by_an_unknown_key(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    with refused(device, UntrustedKey):
        device.receive(sim.deliver("dev-1", signers=["attacker"]), sim.now)


def test_refuses_a_forged_director_signature(
    sim: RepositorySimulator, keys: KeyPool, device: SimulatedDevice
) -> None:
    delivery = sim.deliver("dev-1")
    director = delivery.director
    forged = base64.b64encode(keys("attacker").sign(director.pae())).decode("ascii")
    signature = director.signatures[0].model_copy(update={"sig": forged})
    director = director.model_copy(update={"signatures": (signature,)})
    delivery = delivery.model_copy(update={"director": director})

    with refused(device, SignatureInvalid):
        device.receive(delivery, sim.now)


def test_refuses_a_director_manifest_for_another_device(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    with refused(device, WrongDevice):
        device.receive(sim.deliver("dev-2"), sim.now)


def test_refuses_a_release_for_another_device_class(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    release = sim.sign_release(sim.release(device_class="esp32s3-vww"))

    with refused(device, WrongDeviceClass):
        device.receive(sim.deliver("dev-1", release), sim.now)


@pytest.mark.parametrize("replayed", [0, 1], ids=["older", "equal"])
def test_refuses_a_replayed_director_sequence(
    sim: RepositorySimulator, device: SimulatedDevice, replayed: int
) -> None:
    deliveries = [sim.deliver("dev-1"), sim.deliver("dev-1")]
    for delivery in deliveries:
        device.receive(delivery, sim.now)

    with refused(device, SequenceReplayed):
        device.receive(deliveries[replayed], sim.now)


def test_refuses_an_expired_director_manifest(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    delivery = sim.deliver("dev-1")
    sim.now += DIRECTOR_LIFETIME  # held back until the moment it expires: a freeze attack

    with refused(device, DirectorExpired):
        device.receive(delivery, sim.now)


def test_refuses_a_release_below_the_security_floor(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    patched = sim.sign_release(sim.release("2.0.0", security_version=3))
    vulnerable = sim.sign_release(
        sim.release("1.0.0", security_version=3, per_kind={ComponentKind.MODEL: 2})
    )
    device.receive(sim.deliver("dev-1", patched), sim.now)
    device.confirm(release_of(patched))

    with refused(device, SecurityFloorViolation):
        device.receive(sim.deliver("dev-1", vulnerable), sim.now)


def test_refuses_a_director_naming_another_release(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    named = sim.sign_release(sim.release("1.0.0"))
    other = sim.sign_release(sim.release("1.1.0"))
    delivery = sim.deliver("dev-1", named).model_copy(update={"release": other})

    with refused(device, ReleaseDigestMismatch):
        device.receive(delivery, sim.now)


# -- root ------------------------------------------------------------------------------


def test_refuses_a_root_rotation_signed_only_by_the_new_root_keys(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    sim.rotate_root(root=["root-9"], sign_with=["root-9"])

    with refused(device, RootRotationRefused) as caught:
        device.receive(sim.deliver("dev-1"), sim.now)

    assert isinstance(caught.value.__cause__, UntrustedKey)


def test_refuses_a_root_rotation_by_one_stolen_key_of_a_two_of_two_root(
    keys: KeyPool, now: datetime
) -> None:
    sim = RepositorySimulator(keys, now=now, root_threshold=2)
    device = sim.provision("dev-1")
    sim.rotate_root(
        root=["root-1", "attacker"],
        release=["attacker"],
        thresholds={Role.RELEASE: 1},
        sign_with=["root-1", "attacker"],
    )
    release = sim.sign_release(sim.release(), ["attacker"])

    with refused(device, RootRotationRefused) as caught:
        device.receive(sim.deliver("dev-1", release), sim.now)

    assert isinstance(caught.value.__cause__, SignatureRefusal)
    assert (caught.value.__cause__.valid, caught.value.__cause__.threshold) == (1, 2)


def test_refuses_a_root_chain_that_skips_a_version(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    sim.rotate_root()
    skipped_to = sim.rotate_root()

    with refused(device, RootVersionError):
        device.receive(sim.deliver("dev-1", roots=[skipped_to]), sim.now)


def test_refuses_updates_once_the_root_has_expired(
    sim: RepositorySimulator, device: SimulatedDevice
) -> None:
    sim.now += ROOT_LIFETIME  # the device was offline for a year; the director is fresh

    with refused(device, RootExpired):
        device.receive(sim.deliver("dev-1"), sim.now)


# -- artifacts -------------------------------------------------------------------------


@pytest.fixture
def firmware(sim: RepositorySimulator, device: SimulatedDevice) -> Component:
    """The firmware component of a release the device has just accepted."""
    accepted = device.receive(sim.deliver("dev-1"), sim.now)
    component = accepted.release.component(ComponentKind.FIRMWARE)
    assert component is not None
    return component


def test_stops_reading_an_endless_artifact_at_the_first_byte_past_its_length(
    sim: RepositorySimulator, device: SimulatedDevice, firmware: Component
) -> None:
    served = 0

    def endless() -> Iterator[bytes]:
        nonlocal served
        for byte in itertools.chain(sim.artifacts[firmware.sha256], itertools.repeat(0x41)):
            served += 1
            yield bytes([byte])

    with refused(device, ArtifactTooLong):
        device.download(firmware, endless())
    assert served == firmware.length + 1


def test_refuses_an_artifact_shorter_than_declared(
    sim: RepositorySimulator, device: SimulatedDevice, firmware: Component
) -> None:
    truncated = sim.artifacts[firmware.sha256][:-1]

    with refused(device, ArtifactTooShort):
        device.download(firmware, [truncated])


def test_refuses_an_artifact_whose_digest_does_not_match(
    sim: RepositorySimulator, device: SimulatedDevice, firmware: Component
) -> None:
    data = sim.artifacts[firmware.sha256]
    swapped = bytes([data[0] ^ 1]) + data[1:]

    with refused(device, ArtifactDigestMismatch):
        device.download(firmware, [swapped])
