"""Errors raised while decoding wire documents.

Exception tree::

    DocumentError              a document cannot be used at all (code: ``malformed``)
    ├── DocumentTooLarge       over its size cap, refused before parsing (``too_large``)
    ├── DuplicateKeyError      a JSON object repeats a key (``duplicate_key``)
    └── WrongPayloadType       a DSSE envelope of an unexpected kind (``wrong_payload_type``)

Every error carries a stable ``code`` that API, MQTT and CoAP adapters report as-is.
"""

from __future__ import annotations

__all__ = ["DocumentError", "DocumentTooLarge", "DuplicateKeyError", "WrongPayloadType"]


class DocumentError(ValueError):
    code = "malformed"


class DocumentTooLarge(DocumentError):
    code = "too_large"

    def __init__(self, *, size: int, cap: int, what: str) -> None:
        super().__init__(f"{what} is {size} bytes; the cap is {cap} bytes")
        self.size = size
        self.cap = cap


class DuplicateKeyError(DocumentError):
    code = "duplicate_key"


class WrongPayloadType(DocumentError):
    code = "wrong_payload_type"

    def __init__(self, *, expected: str, got: str) -> None:
        super().__init__(f"expected payloadType {expected!r}, got {got!r}")
        self.expected = expected
        self.got = got
