"""docs/protocol.md against the code: its generated blocks are current, its example verifies.

Where a check can be made without our own code (PAE layout, keyids, Ed25519), it is made
with ``hashlib`` and ``cryptography`` directly, the way a C implementer would.
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

import schemas
from schemas import (
    Delivery,
    DirectorManifest,
    Envelope,
    ReleaseManifest,
    Role,
    RootMetadata,
    decode_payload,
    strict_loads,
)
from signer import errors as signer_errors
from signer.acceptance import accept_update
from signer.artifacts import verify_artifact
from signer.errors import DirectorExpired
from signer.signing import verify_role
from tests.schemas.protocol_example import (
    DOC,
    NOW,
    SEEDS,
    build_example,
    extract_blocks,
    render_blocks,
)


@pytest.fixture(scope="module")
def doc() -> dict[str, str]:
    return extract_blocks(DOC.read_text(encoding="utf-8"))


def _envelope(doc: dict[str, str], name: str, kind: str) -> Envelope:
    return Envelope.from_bytes(doc[f"example:{name}"].encode(), kind=kind)


def _root(doc: dict[str, str]) -> RootMetadata:
    return decode_payload(_envelope(doc, "root-envelope", "root"), RootMetadata)


def _pairs(block: str) -> list[tuple[str, str]]:
    """``keyid X`` / ``sig Y`` lines as (keyid, sig) pairs."""
    values = [line.split()[1] for line in block.splitlines()]
    return list(zip(values[::2], values[1::2], strict=True))


def test_every_generated_block_matches_the_doc(doc: dict[str, str]) -> None:
    expected = render_blocks()
    assert sorted(doc) == sorted(expected)
    for key, text in expected.items():
        assert doc[key] == text, f"{key} is stale: run python -m tests.schemas.protocol_example"


def test_codes_table_lists_exactly_the_refusal_codes() -> None:
    table = DOC.read_text(encoding="utf-8").split("<!-- codes -->\n", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, re.M)
    families = [signer_errors.Refusal, schemas.DocumentError]
    classes = {cls for family in families for cls in [family, *_subclasses(family)]}
    assert sorted(documented) == sorted({cls.code for cls in classes})
    assert len(documented) == len(set(documented))


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in [direct, *_subclasses(direct)]]


def test_keyids_are_sha256_of_the_public_keys_derived_from_the_seeds(
    doc: dict[str, str],
) -> None:
    lines = doc["example:keys"].splitlines()
    for name, public_line, keyid_line in zip(lines[::3], lines[1::3], lines[2::3], strict=True):
        public = Ed25519PrivateKey.from_private_bytes(SEEDS[name]).public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert public_line.split() == ["public", raw.hex()]
        assert keyid_line.split() == ["keyid", hashlib.sha256(raw).hexdigest()]


def test_release_pae_follows_the_documented_layout(doc: dict[str, str]) -> None:
    payload_type = b"application/vnd.tinyfleet.release+json"
    body = doc["example:release-payload"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(body), body)
    assert bytes.fromhex(doc["example:release-pae-hex"].replace("\n", "")) == pae
    assert pae.startswith(doc["example:release-pae-prefix"].encode())
    envelope = _envelope(doc, "release-envelope", "release")
    assert envelope.payload_bytes() == body
    assert hashlib.sha256(body).hexdigest() == doc["example:release-digest"]


def test_example_signatures_verify_with_plain_ed25519(doc: dict[str, str]) -> None:
    root = _root(doc)
    pae = bytes.fromhex(doc["example:release-pae-hex"].replace("\n", ""))
    for keyid, sig in _pairs(doc["example:release-signatures"]):
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(root.keys[keyid].public))
        key.verify(base64.b64decode(sig, validate=True), pae)
    director_key = root.keys[root.role(Role.DIRECTOR).keyids[0]]
    director = _envelope(doc, "director-envelope", "director")
    assert director.pae() == doc["example:director-pae"].encode()
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(director_key.public)).verify(
        base64.b64decode(director.signatures[0].sig, validate=True), director.pae()
    )


def test_release_envelope_carries_two_of_three_release_signatures(doc: dict[str, str]) -> None:
    root_envelope = _envelope(doc, "root-envelope", "root")
    root = decode_payload(root_envelope, RootMetadata)
    assert verify_role(root_envelope, root, Role.ROOT) == set(root.role(Role.ROOT).keyids)

    release = _envelope(doc, "release-envelope", "release")
    signers = {keyid for keyid, _ in _pairs(doc["example:release-signatures"])}
    assert verify_role(release, root, Role.RELEASE) == signers
    assert len(signers) == root.role(Role.RELEASE).threshold == 2
    assert len(root.role(Role.RELEASE).keyids) == 3


def _delivery(doc: dict[str, str]) -> Delivery:
    data = doc["example:delivery"].encode()
    strict_loads(data, cap=64 * 1024, what="delivery")
    return Delivery.model_validate_json(data, strict=True)


def test_example_delivery_is_accepted_and_its_artifact_verifies(doc: dict[str, str]) -> None:
    state = build_example().state
    assert state.root == _root(doc)

    accepted = accept_update(state, _delivery(doc), NOW)

    assert accepted.release_digest == doc["example:release-digest"]
    assert accepted.state.last_sequence == accepted.director.sequence > state.last_sequence
    assert accepted.state.floors == state.floors
    artifact = bytes.fromhex(doc["example:artifact"].splitlines()[0].split()[1])
    (component,) = accepted.release.components
    verify_artifact(
        name=component.name, length=component.length, sha256=component.sha256, data=artifact
    )


def test_example_delivery_is_refused_once_the_director_expires(doc: dict[str, str]) -> None:
    director = decode_payload(_envelope(doc, "director-envelope", "director"), DirectorManifest)
    with pytest.raises(DirectorExpired):
        accept_update(build_example().state, _delivery(doc), director.expires)


def test_device_reports_verify_with_the_device_key(doc: dict[str, str]) -> None:
    status = _envelope(doc, "status-envelope", "status")
    device = Ed25519PrivateKey.from_private_bytes(SEEDS["device"]).public_key()
    (signature,) = status.signatures
    device.verify(base64.b64decode(signature.sig, validate=True), status.pae())
    assert status.payload_bytes() == doc["example:status-payload"].encode()
    assert (
        decode_payload(status, schemas.StatusReport).release_digest
        == (doc["example:release-digest"])
    )


def test_release_payload_decodes_to_the_example_manifest(doc: dict[str, str]) -> None:
    release = decode_payload(_envelope(doc, "release-envelope", "release"), ReleaseManifest)
    assert release == build_example().release


def test_telemetry_payload_is_the_canonical_bytes_of_a_valid_report(doc: dict[str, str]) -> None:
    payload = doc["example:telemetry-payload"].encode()
    report = schemas.TelemetryReport.model_validate_json(payload, strict=True)
    assert schemas.model_bytes(report) == payload
