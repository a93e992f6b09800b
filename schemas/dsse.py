"""DSSE envelopes (github.com/secure-systems-lab/dsse) and their pre-authentication encoding.

The signature covers ``PAE(payloadType, payload)``; a verifier checks it over the payload
bytes it received and never re-serialises them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from schemas.canonical import canonical_bytes, strict_loads
from schemas.errors import DocumentError, WrongPayloadType

__all__ = [
    "ENVELOPE_CAP",
    "PAYLOAD_TYPE_PREFIX",
    "Envelope",
    "Signature",
    "b64decode_strict",
    "pae",
    "payload_type",
]

PAYLOAD_TYPE_PREFIX = "application/vnd.tinyfleet."
# python-tuf's caps: 512 KB for root, 16 KiB for other small metadata.
ENVELOPE_CAP = {"root": 512_000}
DEFAULT_ENVELOPE_CAP = 16_384

KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def payload_type(kind: str) -> str:
    return f"{PAYLOAD_TYPE_PREFIX}{kind}+json"


def pae(payload_type_: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the exact bytes that are signed."""
    kind = payload_type_.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def b64decode_strict(value: str, *, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise DocumentError(f"{what} is not valid base64: {exc}") from exc


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keyid: KeyId
    sig: str = Field(description="base64 of the 64-byte Ed25519 signature over PAE")


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    payloadType: str
    payload: str = Field(description="base64 of the RFC 8785 payload bytes")
    signatures: tuple[Signature, ...]

    @model_validator(mode="after")
    def _one_signature_per_keyid(self) -> Envelope:
        # Here, not only in from_bytes, so envelopes inside a Delivery are held to it too.
        keyids = [signature.keyid for signature in self.signatures]
        if len(keyids) != len(set(keyids)):
            raise ValueError("a keyid signs the envelope more than once")
        return self

    @classmethod
    def wrap(cls, kind: str, payload: bytes) -> Envelope:
        """An unsigned envelope around payload bytes; signers add signatures."""
        return cls(
            payloadType=payload_type(kind),
            payload=base64.b64encode(payload).decode("ascii"),
            signatures=(),
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, kind: str | None = None) -> Envelope:
        """Strictly parse an envelope: size cap first, then duplicate keys, then fields."""
        cap = ENVELOPE_CAP.get(kind or "", DEFAULT_ENVELOPE_CAP)
        strict_loads(data, cap=cap, what=f"{kind or 'signed'} envelope")
        try:
            envelope = cls.model_validate_json(data, strict=True)
        except ValidationError as exc:
            raise DocumentError(f"not a DSSE envelope: {exc.errors()[0]['msg']}") from exc
        if kind is not None and envelope.payloadType != payload_type(kind):
            raise WrongPayloadType(expected=payload_type(kind), got=envelope.payloadType)
        return envelope

    def payload_bytes(self) -> bytes:
        return b64decode_strict(self.payload, what="payload")

    @property
    def kind(self) -> str:
        """``root`` for ``application/vnd.tinyfleet.root+json``; '' if not ours."""
        if self.payloadType.startswith(PAYLOAD_TYPE_PREFIX) and self.payloadType.endswith("+json"):
            return self.payloadType[len(PAYLOAD_TYPE_PREFIX) : -len("+json")]
        return ""

    def pae(self) -> bytes:
        return pae(self.payloadType, self.payload_bytes())

    def with_signature(self, signature: Signature) -> Envelope:
        others = tuple(s for s in self.signatures if s.keyid != signature.keyid)
        return self.model_copy(update={"signatures": (*others, signature)})

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.model_dump(mode="json"))
