"""The one serialiser for signed bytes (RFC 8785, JCS) and the one strict JSON reader."""

from __future__ import annotations

import json
from typing import Any

import rfc8785
from pydantic import BaseModel

from schemas.errors import DocumentError, DocumentTooLarge, DuplicateKeyError

__all__ = ["canonical_bytes", "model_bytes", "strict_loads"]


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value: same value, same bytes, same digest."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise DocumentError(f"value cannot be canonicalised: {exc}") from exc


def model_bytes(model: BaseModel) -> bytes:
    """Canonical bytes of a wire model; the payload that gets signed."""
    return canonical_bytes(model.model_dump(mode="json"))


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeyError(f"duplicate JSON key {key!r}")
        seen[key] = value
    return seen


def _refuse_constant(name: str) -> Any:
    raise DocumentError(f"non-standard JSON constant {name}")


def strict_loads(data: bytes, *, cap: int, what: str = "document") -> Any:
    """Parse JSON refusing oversize input, duplicate keys, NaN/Infinity and bad UTF-8."""
    if len(data) > cap:
        raise DocumentTooLarge(size=len(data), cap=cap, what=what)
    try:
        text = data.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
        )
    except DocumentError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DocumentError(f"{what} is not valid JSON: {exc}") from exc
