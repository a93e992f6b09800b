"""Which model each payloadType carries, and the one decoder from signed bytes to a model."""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError

from schemas.canonical import model_bytes, strict_loads
from schemas.common import WireModel
from schemas.device import StatusReport, TelemetryReport
from schemas.director import DirectorManifest
from schemas.dsse import DEFAULT_ENVELOPE_CAP, ENVELOPE_CAP, Envelope
from schemas.errors import DocumentError, WrongPayloadType
from schemas.release import ReleaseManifest
from schemas.root import RootMetadata

__all__ = ["DOCUMENT_KINDS", "decode_payload", "kind_of", "wrap_model"]

Doc = TypeVar("Doc", bound=WireModel)

DOCUMENT_KINDS: dict[str, type[WireModel]] = {
    "root": RootMetadata,
    "release": ReleaseManifest,
    "director": DirectorManifest,
    "status": StatusReport,
    "telemetry": TelemetryReport,
}


def kind_of(model_type: type[WireModel]) -> str:
    for kind, candidate in DOCUMENT_KINDS.items():
        if candidate is model_type:
            return kind
    raise KeyError(f"{model_type.__name__} is not a signed document kind")


def wrap_model(model: WireModel) -> Envelope:
    """An unsigned envelope whose payload is the model's canonical bytes."""
    return Envelope.wrap(kind_of(type(model)), model_bytes(model))


def decode_payload(envelope: Envelope, model_type: type[Doc]) -> Doc:
    """Parse the payload bytes as received (never re-serialised) into ``model_type``.

    Callers verify signatures over the same bytes before trusting the result.
    """
    kind = kind_of(model_type)
    if envelope.kind != kind:
        raise WrongPayloadType(expected=kind, got=envelope.payloadType)
    cap = ENVELOPE_CAP.get(kind, DEFAULT_ENVELOPE_CAP)
    payload = envelope.payload_bytes()
    strict_loads(payload, cap=cap, what=f"{kind} payload")
    try:
        return model_type.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or kind
        raise DocumentError(f"{kind} payload: {where}: {first['msg']}") from exc
