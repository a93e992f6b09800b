"""Signing envelopes and checking a role's t-of-n threshold over them."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from schemas import (
    DocumentError,
    Envelope,
    Role,
    RootMetadata,
    Signature,
    WireModel,
    decode_payload,
    wrap_model,
)
from schemas.documents import Doc
from signer.errors import (
    MalformedDocument,
    SignatureInvalid,
    SignatureRefusal,
    ThresholdNotMet,
    UntrustedKey,
    WrongRoleKey,
)
from signer.keys import SigningKey, verify_signature

__all__ = ["decode_verified", "sign_envelope", "sign_model", "verify_role"]


def sign_envelope(envelope: Envelope, keys: Iterable[SigningKey]) -> Envelope:
    """Add each key's signature over the envelope's PAE; re-signing replaces a key's sig."""
    message = envelope.pae()
    for key in keys:
        signature = base64.b64encode(key.sign(message)).decode("ascii")
        envelope = envelope.with_signature(Signature(keyid=key.keyid, sig=signature))
    return envelope


def sign_model(model: WireModel, keys: Iterable[SigningKey]) -> Envelope:
    return sign_envelope(wrap_model(model), keys)


def _decode_sig(signature: Signature) -> bytes | None:
    try:
        raw = base64.b64decode(signature.sig.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    return raw if len(raw) == 64 else None


def verify_role(envelope: Envelope, root: RootMetadata, role: Role) -> set[str]:
    """Return the keyids of ``role`` whose signatures verify; raise unless ≥ threshold.

    Below the threshold the refusal names the most telling reason: a trusted key whose
    signature fails (tampering) before a key of another role, before a key the root does
    not list, before simply too few signatures.
    """
    role_keys = root.role(role)
    try:
        message = envelope.pae()
    except DocumentError as exc:
        raise MalformedDocument(str(exc)) from exc
    valid: set[str] = set()
    invalid: list[str] = []
    wrong_role: list[str] = []
    untrusted: list[str] = []
    for signature in envelope.signatures:
        if signature.keyid not in root.keys:
            untrusted.append(signature.keyid)
        elif signature.keyid not in role_keys.keyids:
            wrong_role.append(signature.keyid)
        else:
            raw = _decode_sig(signature)
            if raw is not None and verify_signature(root.keys[signature.keyid], raw, message):
                valid.add(signature.keyid)
            else:
                invalid.append(signature.keyid)
    if len(valid) >= role_keys.threshold:
        return valid
    refusal: type[SignatureRefusal]
    if invalid:
        refusal, reason = SignatureInvalid, f"signature fails for trusted key {invalid[0][:12]}"
    elif wrong_role:
        refusal, reason = WrongRoleKey, f"key {wrong_role[0][:12]} belongs to another role"
    elif untrusted:
        refusal, reason = UntrustedKey, f"key {untrusted[0][:12]} is not in root (or revoked)"
    else:
        refusal, reason = ThresholdNotMet, "too few signatures"
    raise refusal(reason, role=role.value, valid=len(valid), threshold=role_keys.threshold)


def decode_verified(envelope: Envelope, root: RootMetadata, role: Role, model: type[Doc]) -> Doc:
    """Verify ``role``'s threshold over the received bytes, then parse those same bytes."""
    verify_role(envelope, root, role)
    try:
        return decode_payload(envelope, model)
    except DocumentError as exc:
        raise MalformedDocument(str(exc)) from exc
