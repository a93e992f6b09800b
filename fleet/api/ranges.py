"""HTTP byte ranges (RFC 9110 §14) for artifact downloads: one range per request.

``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` are honoured. A header we do not serve —
several ranges, another unit, or a malformed one — is ignored and the whole artifact
is sent, as §14.2 allows; a well-formed range that starts past the end, or an empty
suffix, is unsatisfiable: 416 with ``Content-Range: bytes */length``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleet.api.problems import ProblemError

__all__ = ["ByteRange", "etag_matches", "parse_range"]

# 19 digits keep a position inside a signed 64-bit integer; longer is malformed here.
_SINGLE_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, stop)`` of an artifact of ``length`` bytes."""

    start: int
    stop: int
    length: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{self.length}"


def parse_range(header: str | None, length: int) -> ByteRange | None:
    """The range to send, or None for the whole artifact; raises 416 when unsatisfiable."""
    if header is None:
        return None
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or length == 0:
            raise _unsatisfiable(header, length)
        return ByteRange(max(0, length - suffix), length, length)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= length:
        raise _unsatisfiable(header, length)
    stop = length if not last else min(int(last) + 1, length)
    return ByteRange(start, stop, length)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names this entity (weak comparison, §13.1.2)."""
    if if_none_match is None:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def _unsatisfiable(header: str, length: int) -> ProblemError:
    return ProblemError(
        f"range {header[:64]!r} is outside the artifact's {length} bytes",
        status=416,
        code="range_not_satisfiable",
        headers={"Content-Range": f"bytes */{length}"},
    )
