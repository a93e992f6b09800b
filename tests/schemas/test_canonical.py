"""Canonical bytes round-trip, strict parsing refuses, and no byte of a signed document moves.

Properties use hypothesis; the strict-parsing cases are one refusal per test.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    Action,
    Calibration,
    Component,
    ComponentKind,
    ComponentVersion,
    Constraints,
    Delivery,
    DeviceState,
    DirectorManifest,
    DocumentError,
    DocumentTooLarge,
    DuplicateKeyError,
    Envelope,
    ReleaseManifest,
    Role,
    Signature,
    StatusReport,
    WireModel,
    WrongPayloadType,
    canonical_bytes,
    decode_payload,
    model_bytes,
    strict_loads,
    wrap_model,
)
from schemas.release import MAX_ARTIFACT_LENGTH, SEMVER_PATTERN
from signer.errors import MalformedDocument, Refusal, SignatureInvalid
from signer.signing import decode_verified, verify_role
from tests.schemas.protocol_example import Example, build_example

SAFE = 2**53 - 1
CAP = 1 << 20

# Any finite double except the integral ones in [2**53, 1e21): JCS writes those as plain
# integers (1e20 → "100000000000000000000"), which the strict reader refuses as outside
# I-JSON's exact range. No wire model has a float that large (progress ≤ 1, epsilon ≤ 64).
finite_floats = st.one_of(
    st.floats(min_value=-(2.0**53), max_value=2.0**53, exclude_min=True, exclude_max=True),
    st.floats(min_value=1e21, allow_infinity=False),
    st.floats(max_value=-1e21, allow_infinity=False),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-SAFE, SAFE) | finite_floats | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25,
)

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", fullmatch=True)
device_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
digests = st.binary(min_size=1, max_size=8).map(lambda data: hashlib.sha256(data).hexdigest())
counts = st.integers(0, SAFE)
versions = st.text(min_size=1, max_size=64)
timestamps = st.datetimes(max_value=datetime(9990, 1, 1), timezones=st.just(UTC)).map(
    lambda moment: moment.replace(microsecond=0)
)

components = st.builds(
    Component,
    kind=st.sampled_from(ComponentKind),
    name=names,
    version=versions,
    security_version=counts,
    sha256=digests,
    length=st.integers(0, MAX_ARTIFACT_LENGTH),
    media_type=st.text(min_size=1, max_size=128),
)
releases = st.builds(
    ReleaseManifest,
    name=names,
    version=versions,
    device_class=names,
    created=timestamps,
    components=st.lists(components, min_size=1, max_size=3, unique_by=lambda c: c.kind).map(tuple),
    constraints=st.builds(
        Constraints,
        min_firmware_version=st.none()
        | st.from_regex(SEMVER_PATTERN, fullmatch=True).filter(lambda v: len(v) <= 64),
        required_ops=st.lists(st.from_regex(r"[A-Z0-9_]{1,16}", fullmatch=True), max_size=4).map(
            tuple
        ),
        ram_bytes=st.none() | counts,
        flash_bytes=st.none() | counts,
    ),
)


@st.composite
def directors(draw: st.DrawFn) -> DirectorManifest:
    issued = draw(timestamps)
    return DirectorManifest(
        device_id=draw(device_ids),
        sequence=draw(st.integers(1, SAFE)),
        issued=issued,
        expires=issued + timedelta(seconds=draw(st.integers(1, 10**8))),
        release_digest=draw(digests),
        calibration=draw(
            st.none()
            | st.builds(
                Calibration,
                version=counts,
                sha256=digests,
                length=st.integers(0, 1024 * 1024),
                media_type=st.text(max_size=64),
            )
        ),
        rollout_id=draw(st.none() | st.text(max_size=64)),
        wave=draw(st.none() | counts),
        action=draw(st.sampled_from(Action)),
    )


statuses = st.builds(
    StatusReport,
    device_id=device_ids,
    counter=counts,
    sent=timestamps,
    state=st.sampled_from(DeviceState),
    release_digest=st.none() | digests,
    running_release_digest=st.none() | digests,
    components=st.lists(
        st.builds(ComponentVersion, kind=names, version=versions, security_version=counts),
        max_size=4,
    ).map(tuple),
    director_sequence=st.none() | counts,
    progress=st.none() | st.floats(0.0, 1.0),
    error_code=st.none() | st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True),
    detail=st.none() | st.text(max_size=256),
)


@pytest.fixture(scope="module")
def example() -> Example:
    return build_example()


def _change_one_byte(data: bytes, choose: st.DataObject) -> bytes:
    index = choose.draw(st.integers(0, len(data) - 1), label="index")
    value = choose.draw(st.integers(0, 255).filter(lambda v: v != data[index]), label="value")
    return data[:index] + bytes([value]) + data[index + 1 :]


def _envelope(payload: Any, signatures: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "payloadType": "application/vnd.tinyfleet.release+json",
        "payload": payload,
        "signatures": signatures or [],
    }


# Canonical encoding


@given(json_values)
def test_canonical_bytes_round_trip_through_the_strict_reader(value: Any) -> None:
    encoded = canonical_bytes(value)
    decoded = strict_loads(encoded, cap=CAP)
    assert decoded == value
    assert canonical_bytes(decoded) == encoded


@given(st.one_of(releases, directors(), statuses))
def test_wire_models_round_trip_through_their_signed_bytes(model: WireModel) -> None:
    envelope = wrap_model(model)
    decoded = decode_payload(envelope, type(model))
    assert decoded == model
    assert model_bytes(decoded) == envelope.payload_bytes()


# A signed document cannot change by one byte


@given(choose=st.data())
def test_a_changed_envelope_byte_never_yields_another_document(
    example: Example, choose: st.DataObject
) -> None:
    original = example.release_envelope
    mutated = _change_one_byte(original.to_bytes(), choose)
    try:
        envelope = Envelope.from_bytes(mutated, kind="release")
        release = decode_verified(envelope, example.root, Role.RELEASE, ReleaseManifest)
    except (DocumentError, Refusal):
        return
    # Only base64 pad bits can change without changing the decoded bytes.
    assert envelope.payload_bytes() == original.payload_bytes()
    assert release == example.release


@given(choose=st.data())
def test_a_changed_payload_byte_fails_signature_verification(
    example: Example, choose: st.DataObject
) -> None:
    original = example.release_envelope
    payload = _change_one_byte(original.payload_bytes(), choose)
    tampered = Envelope.wrap("release", payload).model_copy(
        update={"signatures": original.signatures}
    )
    with pytest.raises(SignatureInvalid):
        verify_role(tampered, example.root, Role.RELEASE)


# Strict parsing: one refusal per test


def test_refuses_a_duplicate_key_in_the_envelope() -> None:
    data = b'{"payload":"","payload":"","payloadType":"x","signatures":[]}'
    with pytest.raises(DuplicateKeyError):
        Envelope.from_bytes(data)


def test_refuses_a_duplicate_key_nested_in_a_signature() -> None:
    keyid = "ab" * 32
    data = (
        '{"payload":"","payloadType":"x","signatures":'
        f'[{{"keyid":"{keyid}","keyid":"{keyid}","sig":""}}]}}'
    ).encode()
    with pytest.raises(DuplicateKeyError):
        Envelope.from_bytes(data)


def test_refuses_a_duplicate_key_in_a_payload(example: Example) -> None:
    payload = example.release_envelope.payload_bytes().replace(b"{", b'{"type":"release",', 1)
    with pytest.raises(DuplicateKeyError):
        decode_payload(Envelope.wrap("release", payload), ReleaseManifest)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_refuses_non_finite_numbers(literal: bytes) -> None:
    with pytest.raises(DocumentError):
        strict_loads(b'{"progress":' + literal + b"}", cap=CAP)


@pytest.mark.parametrize(
    "number",
    [b"9007199254740992", b"-9007199254740992", b"1" * 5000],
    ids=["2^53", "-2^53", "5000 digits"],
)
def test_refuses_integers_outside_the_exact_double_range(number: bytes) -> None:
    with pytest.raises(DocumentError):
        strict_loads(b'{"counter":' + number + b"}", cap=CAP)


def test_refuses_an_envelope_over_the_cap_before_parsing() -> None:
    data = canonical_bytes(_envelope("")).replace(b"{", b"{" + b" " * 16_384, 1)
    with pytest.raises(DocumentTooLarge) as refused:
        Envelope.from_bytes(data, kind="release")
    assert (refused.value.size, refused.value.cap) == (len(data), 16_384)


def test_accepts_an_envelope_of_exactly_the_cap() -> None:
    data = canonical_bytes(_envelope(""))
    padded = data.replace(b"{", b"{" + b" " * (16_384 - len(data)), 1)
    assert len(padded) == 16_384
    assert Envelope.from_bytes(padded, kind="release").payload == ""


def test_root_envelopes_have_the_larger_cap(example: Example) -> None:
    data = example.root_envelope.to_bytes()
    padded = data.replace(b"{", b"{" + b" " * (512_000 - len(data)), 1)
    assert Envelope.from_bytes(padded, kind="root") == example.root_envelope
    with pytest.raises(DocumentTooLarge):
        Envelope.from_bytes(padded + b" ", kind="root")
    with pytest.raises(DocumentTooLarge):
        Envelope.from_bytes(padded)


def test_refuses_an_oversize_payload_inside_a_well_formed_envelope() -> None:
    envelope = Envelope.wrap("release", b" " * 16_385)
    with pytest.raises(DocumentTooLarge):
        decode_payload(envelope, ReleaseManifest)


def test_refuses_an_unknown_envelope_field() -> None:
    data = canonical_bytes({**_envelope(""), "note": "ignored?"})
    with pytest.raises(DocumentError, match="Extra inputs"):
        Envelope.from_bytes(data)


def test_refuses_a_second_signature_by_the_same_keyid(example: Example) -> None:
    first = example.release_envelope.signatures[0].model_dump()
    data = canonical_bytes(_envelope("", [first, first]))
    with pytest.raises(DocumentError, match="more than once"):
        Envelope.from_bytes(data)


def test_refuses_a_second_signature_by_the_same_keyid_inside_a_delivery(
    example: Example,
) -> None:
    release = example.release_envelope.model_dump(mode="json")
    release["signatures"].append(release["signatures"][0])
    director = example.director_envelope.model_dump(mode="json")
    with pytest.raises(ValueError, match="more than once"):
        Delivery.model_validate({"director": director, "release": release})


def test_refuses_the_wrong_payload_type(example: Example) -> None:
    data = example.director_envelope.to_bytes()
    with pytest.raises(WrongPayloadType):
        Envelope.from_bytes(data, kind="release")
    with pytest.raises(WrongPayloadType):
        decode_payload(example.director_envelope, ReleaseManifest)


def test_a_correctly_signed_document_of_the_wrong_kind_is_malformed(example: Example) -> None:
    director_key = example.keys["director"]
    relabelled = Envelope.wrap("release", example.director_envelope.payload_bytes())
    signed = relabelled.with_signature(
        Signature(
            keyid=director_key.keyid,
            sig=base64.b64encode(director_key.sign(relabelled.pae())).decode(),
        )
    )
    with pytest.raises(MalformedDocument):
        decode_verified(signed, example.root, Role.DIRECTOR, DirectorManifest)


NOT_STRICT_BASE64 = ["not base64!", "eyJ9fQ", "eyJ9fQ==\n", "e yJ9fQ==", "eyJ9fQ=-"]


@pytest.mark.parametrize("payload", NOT_STRICT_BASE64)
def test_refuses_a_payload_that_is_not_strict_base64(example: Example, payload: str) -> None:
    envelope = Envelope.model_validate(_envelope(payload))
    with pytest.raises(DocumentError, match="base64"):
        envelope.payload_bytes()
    with pytest.raises(MalformedDocument):
        verify_role(envelope, example.root, Role.RELEASE)


def test_a_signature_that_is_not_base64_counts_as_invalid(example: Example) -> None:
    first, second = example.release_envelope.signatures
    broken = example.release_envelope.model_copy(
        update={"signatures": (first, second.model_copy(update={"sig": "%%%"}))}
    )
    with pytest.raises(SignatureInvalid):
        verify_role(broken, example.root, Role.RELEASE)
