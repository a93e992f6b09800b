"""The one serialiser for signed bytes (RFC 8785, JCS) and the one strict JSON reader."""

from __future__ import annotations

import json
import math
from typing import Any

import rfc8785
from pydantic import BaseModel

from schemas.errors import DocumentError, DocumentTooLarge, DuplicateKeyError

__all__ = ["canonical_bytes", "model_bytes", "strict_loads"]

_SAFE_INT = 2**53 - 1


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


def _safe_int(text: str) -> int:
    # Length first: int() of a 5000-digit string raises a bare ValueError, not ours.
    if len(text) <= len(str(-_SAFE_INT)) and abs(value := int(text)) <= _SAFE_INT:
        return value
    raise DocumentError(f"integer {text[:24]} is outside ±(2**53 - 1)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DocumentError(f"number {text[:24]} overflows a double")
    return value


def strict_loads(data: bytes, *, cap: int, what: str = "document") -> Any:
    """Parse JSON refusing oversize input, duplicate keys, NaN/Infinity and bad UTF-8.

    Numbers must fit I-JSON: integers within ±(2**53 - 1), floats finite as doubles.
    """
    if len(data) > cap:
        raise DocumentTooLarge(size=len(data), cap=cap, what=what)
    try:
        text = data.decode("utf-8")
        return json.loads(
            text,
            object_pairs_hook=_refuse_duplicates,
            parse_constant=_refuse_constant,
            parse_int=_safe_int,
            parse_float=_finite_float,
        )
    except DocumentError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DocumentError(f"{what} is not valid JSON: {exc}") from exc
