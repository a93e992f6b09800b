"""One router per resource; each carries the full ``/api/v1/...`` prefix itself, so a
route's ``path`` is the template clients call (and what metrics are labelled with)."""

from __future__ import annotations

__all__ = ["API_PREFIX"]

API_PREFIX = "/api/v1"
