"""Field rules the protocol doc promises a C verifier: timestamps, keyids, integer ranges."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import (
    DirectorManifest,
    Mechanism,
    PublicKey,
    Role,
    RoleKeys,
    RootMetadata,
    TelemetryReport,
    format_timestamp,
    parse_timestamp,
)
from tests.schemas.protocol_example import Example, build_example

DIGEST = "ab" * 32


@pytest.fixture(scope="module")
def example() -> Example:
    return build_example()


@pytest.mark.parametrize(
    "text",
    [
        "2026-01- 1T00:00:00Z",  # strptime alone accepts a space-padded day
        "٢٠٢٦-01-01T00:00:00Z",  # and non-ASCII digits
        "2026-01-01T00:00:00Z\n",
        "2026-01-01t00:00:00z",
        "2026-01-01T00:00:00+00:00",
        "2026-02-30T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:59:60Z",
    ],
)
def test_refuses_timestamps_that_do_not_compare_as_strings(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_early_years_are_written_with_four_digits() -> None:
    text = format_timestamp(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert text == "0999-01-02T03:04:05Z"
    assert parse_timestamp(text) == datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)


def _root_fields(example: Example, **changes: Any) -> dict[str, Any]:
    return {**example.root.model_dump(), **changes}


def test_refuses_a_root_whose_keyid_is_not_the_hash_of_its_key(example: Example) -> None:
    keys = dict(example.root.keys)
    director = example.root.role(Role.DIRECTOR).keyids[0]
    keys[director] = example.keys["release-a"].public
    with pytest.raises(ValidationError, match="not the sha256 of its public key"):
        RootMetadata.model_validate(_root_fields(example, keys=keys))


def test_refuses_one_key_listed_under_two_keyids(example: Example) -> None:
    """Otherwise one release key could meet a 2-of-n threshold alone."""
    keys = dict(example.root.keys)
    alias = "0" * 64
    keys[alias] = example.keys["release-a"].public
    roles = dict(example.root.roles)
    roles[Role.RELEASE] = RoleKeys(keyids=(example.keys["release-a"].keyid, alias), threshold=2)
    with pytest.raises(ValidationError, match="not the sha256 of its public key"):
        RootMetadata.model_validate(_root_fields(example, keys=keys, roles=roles))


def test_public_key_keyid_is_sha256_of_the_raw_key(example: Example) -> None:
    key = example.keys["root"]
    assert PublicKey(public=key.public.public).keyid == key.keyid


def test_refuses_root_version_zero(example: Example) -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        RootMetadata.model_validate(_root_fields(example, version=0))


def test_refuses_director_sequence_zero(example: Example) -> None:
    fields = {**example.director.model_dump(), "sequence": 0}
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        DirectorManifest.model_validate(fields)


def test_refuses_a_zero_telemetry_cap() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        Mechanism(name="none", epsilon=1.0, cap=0)


def test_refuses_a_wave_beyond_the_exact_double_range(example: Example) -> None:
    fields = {**example.director.model_dump(), "wave": 2**53}
    with pytest.raises(ValidationError, match="less than or equal to"):
        DirectorManifest.model_validate(fields)


@pytest.mark.parametrize(
    "change",
    [{"histograms": {"score": (2**53,)}}, {"counters": {"reboots": -(2**53)}}],
)
def test_refuses_telemetry_integers_beyond_the_exact_double_range(
    change: dict[str, Any],
) -> None:
    fields = {
        "device_id": "dev-0001",
        "counter": 1,
        "window": {"start": "2026-02-01T11:00:00Z", "seconds": 60},
        "release_digest": DIGEST,
        "model_version": "kws-3",
        "mechanism": {"name": "none", "epsilon": 1.0, "cap": 1},
        "histograms": {"score": (1,)},
        **change,
    }
    with pytest.raises(ValidationError):
        TelemetryReport.model_validate(fields)
