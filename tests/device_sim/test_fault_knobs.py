"""Fault knobs: parsing from the CLI and the seeded link-drop decisions."""

from __future__ import annotations

import random

import pytest

from device_sim.faults import Faults, LinkFault


def test_faults_parse_names_and_probabilities() -> None:
    assert Faults.parse(["flaky-link=0.3", "corrupt-download", "power-loss=0"]) == Faults(
        flaky_link=0.3, corrupt_download=1.0
    )


@pytest.mark.parametrize("spec", ["gremlins=0.1", "flaky-link=often", "fail-boot=1.5"])
def test_faults_refuse_unknown_names_and_bad_probabilities(spec: str) -> None:
    with pytest.raises(ValueError):
        Faults.parse([spec])


def test_link_drops_are_reproducible_from_the_seed() -> None:
    def cuts(seed: int) -> list[int | None]:
        fault = LinkFault(0.5, random.Random(seed))
        return [fault.cut_after(1000) for _ in range(20)]

    assert cuts(3) == cuts(3)
    assert any(c is None for c in cuts(3)) and any(c is not None for c in cuts(3))
    assert all(c is None or 1 <= c < 1000 for c in cuts(3))
