"""Wire timestamps: ``YYYY-MM-DDTHH:MM:SSZ``, always UTC, always 20 characters.

A fixed-width UTC form compares correctly as a plain string, so a C verifier can check
expiry with ``strcmp`` and no date library.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["Timestamp", "format_timestamp", "parse_timestamp"]

_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
_SHAPE = re.compile(_PATTERN)


def format_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_timestamp(value: object) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC).replace(microsecond=0)
    if not isinstance(value, str) or not _SHAPE.fullmatch(value):
        raise ValueError(f"timestamp must look like 2026-01-31T12:00:00Z, got {value!r}")
    return datetime.strptime(value, _FORMAT).replace(tzinfo=UTC)


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    PlainSerializer(format_timestamp, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _PATTERN}),
]
