"""A release's signed ``Constraints`` on the device: refused before a byte is downloaded.

Each field has its own refusal code (docs/protocol.md §8 step 8); a refused delivery
leaves the trust state exactly as it was, as every other refusal does.
"""

from __future__ import annotations

import pytest
import semver
from hypothesis import assume, given
from hypothesis import strategies as st

from schemas import Constraints, ReleaseManifest
from signer.constraints import DeviceCapabilities, check_constraints, firmware_meets, flash_need
from signer.errors import (
    ConstraintUnmet,
    FirmwareTooOld,
    FlashInsufficient,
    OpsUnsupported,
    RamInsufficient,
)
from tests.signer.simulator import RepositorySimulator, trust_snapshot

KWS_OPS = frozenset({"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"})


def constrained(sim: RepositorySimulator, **constraints: object) -> ReleaseManifest:
    release = sim.release("2.0.0")
    return release.model_copy(update={"constraints": Constraints.model_validate(constraints)})


@pytest.mark.parametrize(
    ("constraints", "device", "refusal", "code"),
    [
        (
            {"min_firmware_version": "2.1.0"},
            DeviceCapabilities("2.0.9"),
            FirmwareTooOld,
            "firmware_too_old",
        ),
        (
            {"min_firmware_version": "2.1.0"},
            DeviceCapabilities(None),
            FirmwareTooOld,
            "firmware_too_old",
        ),
        (
            {"min_firmware_version": "2.1.0"},
            DeviceCapabilities("2.1"),
            FirmwareTooOld,
            "firmware_too_old",
        ),
        (
            {"min_firmware_version": "2.1.0"},
            DeviceCapabilities("2.1.0-rc.1"),
            FirmwareTooOld,
            "firmware_too_old",
        ),
        (
            {"required_ops": ["CONV_2D", "LSTM"]},
            DeviceCapabilities("1.0.0", ops=KWS_OPS),
            OpsUnsupported,
            "ops_unsupported",
        ),
        (
            {"ram_bytes": 262_145},
            DeviceCapabilities("1.0.0", ram_bytes=262_144),
            RamInsufficient,
            "ram_insufficient",
        ),
        (
            {"flash_bytes": 1_048_577},
            DeviceCapabilities("1.0.0", flash_bytes=1_048_576),
            FlashInsufficient,
            "flash_insufficient",
        ),
    ],
)
def test_each_unmet_constraint_is_refused_with_its_code(
    sim: RepositorySimulator,
    constraints: dict[str, object],
    device: DeviceCapabilities,
    refusal: type[ConstraintUnmet],
    code: str,
) -> None:
    with pytest.raises(refusal) as caught:
        check_constraints(constrained(sim, **constraints), device)
    assert caught.value.code == code


def test_the_refusal_names_the_numbers(sim: RepositorySimulator) -> None:
    release = constrained(sim, min_firmware_version="2.1.0", ram_bytes=300_000)
    with pytest.raises(FirmwareTooOld, match=r"needs firmware 2\.1\.0 .* runs 2\.0\.0"):
        check_constraints(release, DeviceCapabilities("2.0.0"))
    with pytest.raises(RamInsufficient, match="300,000 B of RAM; this device has 262,144 B"):
        check_constraints(release, DeviceCapabilities("2.1.0", ram_bytes=262_144))


def test_a_release_within_every_constraint_passes(sim: RepositorySimulator) -> None:
    release = constrained(
        sim,
        min_firmware_version="2.1.0",
        required_ops=["CONV_2D", "SOFTMAX"],
        ram_bytes=262_144,
        flash_bytes=1_048_576,
    )
    device = DeviceCapabilities(
        "2.1.0+build.7", ops=KWS_OPS, ram_bytes=262_144, flash_bytes=1_048_576
    )
    check_constraints(release, device)


def test_undeclared_figures_are_skipped_but_the_firmware_never_is(
    sim: RepositorySimulator,
) -> None:
    release = constrained(sim, required_ops=["LSTM"], ram_bytes=10**9, flash_bytes=10**9)
    check_constraints(release, DeviceCapabilities(None))
    with pytest.raises(FirmwareTooOld):
        check_constraints(constrained(sim, min_firmware_version="0.0.1"), DeviceCapabilities())


def test_flash_counts_the_components_when_they_exceed_the_declared_need(
    sim: RepositorySimulator,
) -> None:
    release = constrained(sim, flash_bytes=16)  # declared far below the real lengths
    total = sum(c.length for c in release.components)
    assert flash_need(release) == total
    check_constraints(release, DeviceCapabilities("1.0.0", flash_bytes=total))
    with pytest.raises(FlashInsufficient, match=f"takes {total:,} B"):
        check_constraints(release, DeviceCapabilities("1.0.0", flash_bytes=total - 1))


def test_a_delivery_breaking_a_constraint_leaves_the_trust_state_untouched(
    sim: RepositorySimulator,
) -> None:
    device = sim.provision("dev-1")
    device.capabilities = DeviceCapabilities("2.0.0")
    before, snapshot = device.state, trust_snapshot(device.state)
    release = sim.sign_release(constrained(sim, min_firmware_version="3.0.0"))

    with pytest.raises(FirmwareTooOld):
        device.receive(sim.deliver("dev-1", release), sim.now)

    assert device.state is before
    assert trust_snapshot(device.state) == snapshot
    device.capabilities = DeviceCapabilities("3.0.0")
    assert device.receive(sim.deliver("dev-1", release), sim.now).director.sequence == 2


versions = st.tuples(*[st.integers(0, 10**6)] * 3)


@given(versions, versions)
def test_firmware_meets_orders_release_versions_numerically(
    running: tuple[int, int, int], minimum: tuple[int, int, int]
) -> None:
    dotted = ".".join(map(str, running)), ".".join(map(str, minimum))
    assert firmware_meets(*dotted) == (running >= minimum)


@given(versions, st.from_regex(r"[0-9A-Za-z-]{1,8}(\.[0-9A-Za-z-]{1,8}){0,2}", fullmatch=True))
def test_a_pre_release_is_below_its_release_and_build_metadata_is_ignored(
    release: tuple[int, int, int], label: str
) -> None:
    base = ".".join(map(str, release))
    pre = f"{base}-{label}"
    assume(semver.Version.is_valid(pre))  # not a numeric identifier with a leading zero
    assert not firmware_meets(pre, base)
    assert firmware_meets(base, pre)
    assert firmware_meets(f"{base}+{label}", base) and firmware_meets(base, f"{base}+{label}")
