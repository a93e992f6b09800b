"""Store errors, each with a stable ``code`` the API and transports map in one place.

Exception tree::

    StoreError              the store could not do what was asked
    ├── NotFound            the row to change does not exist
    ├── Conflict            the database refused a write that breaks its constraints
    │   ├── AlreadyExists   a row with that key (or unique value) is already there
    │   └── MissingReference the row names another that does not exist
    └── BlobError
        ├── BlobTooLarge    a stream went past its limit; nothing was stored
        ├── BlobNotFound    no blob with that sha256
        └── RangeNotSatisfiable the byte range lies outside the blob
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError

__all__ = [
    "AlreadyExists",
    "BlobError",
    "BlobNotFound",
    "BlobTooLarge",
    "Conflict",
    "MissingReference",
    "NotFound",
    "RangeNotSatisfiable",
    "StoreError",
    "mapped_integrity_errors",
]


class StoreError(Exception):
    code = "store_error"


class NotFound(StoreError):
    code = "not_found"


class Conflict(StoreError):
    code = "conflict"


class AlreadyExists(Conflict):
    code = "already_exists"


class MissingReference(Conflict):
    code = "missing_reference"


class BlobError(StoreError):
    code = "blob_error"


class BlobTooLarge(BlobError):
    code = "blob_too_large"


class BlobNotFound(BlobError):
    code = "blob_not_found"


class RangeNotSatisfiable(BlobError):
    code = "range_not_satisfiable"


# PostgreSQL SQLSTATEs and SQLite extended result codes, per kind of violation.
_UNIQUE = {"23505", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}
_FOREIGN_KEY = {"23503", "SQLITE_CONSTRAINT_FOREIGNKEY"}


def _violation_code(error: IntegrityError) -> str | None:
    driver_error = error.orig
    return getattr(driver_error, "sqlstate", None) or getattr(
        driver_error, "sqlite_errorname", None
    )


@contextmanager
def mapped_integrity_errors() -> Iterator[None]:
    """Turn the driver's integrity errors into store errors a service can catch."""
    try:
        yield
    except IntegrityError as error:
        code = _violation_code(error)
        detail = str(error.orig)
        if code in _UNIQUE:
            raise AlreadyExists(detail) from error
        if code in _FOREIGN_KEY:
            raise MissingReference(detail) from error
        raise Conflict(detail) from error
