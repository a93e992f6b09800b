"""Artifact downloads: Starlette's ``FileResponse``, with our error shape and RFC 9110's leniency.

``FileResponse`` implements single and multiple byte ranges, ``If-Range`` and HEAD. Two
things it does differently from what clients of this API rely on, and only those are
changed here: a ``Range`` header it cannot parse (another unit, a reversed or non-numeric
range) is ignored and the whole artifact sent, as RFC 9110 §14.2 says a server may,
instead of a plain-text 400; and an unsatisfiable range is reported before the response
starts, so it becomes a problem document (416 with ``Content-Range: bytes */length``)
like every other API error, not a plain-text body.
"""

from __future__ import annotations

from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable

from fleet.api.problems import ProblemError

__all__ = ["ArtifactResponse", "etag_matches"]


class ArtifactResponse(FileResponse):
    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []  # FileResponse sends the whole file for "no ranges"

    @classmethod
    def refuse_unsatisfiable(cls, http_range: str | None, file_size: int) -> None:
        """Raise the 416 problem now if ``http_range`` cannot be served from ``file_size`` bytes."""
        if http_range is None:
            return
        try:
            cls._parse_range_header(http_range, file_size)
        except RangeNotSatisfiable as exc:
            raise ProblemError(
                f"range {http_range[:64]!r} is outside the artifact's {file_size} bytes",
                status=416,
                code="range_not_satisfiable",
                headers={"Content-Range": f"bytes */{exc.max_size}"},
            ) from None


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names this entity (weak comparison, RFC 9110 §13.1.2).

    ``FileResponse`` leaves conditional GETs to its caller (Starlette's ``StaticFiles``
    does this check for its own files, not as a reusable function).
    """
    if if_none_match is None:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates
