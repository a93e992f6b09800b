"""Store errors, each with a stable ``code`` the API and transports map in one place.

Exception tree::

    StoreError              the store could not do what was asked
    ├── NotFound            the row to change does not exist
    ├── Conflict            the database refused a write that breaks its constraints
    │   ├── AlreadyExists   a row with that key (or unique value) is already there
    │   └── MissingReference the row names another that does not exist
    ├── StoreUnavailable    the database could not do it now (a deadlock, a lock wait
    │                       that timed out, a lost connection); nothing was committed,
    │                       so the same work may be tried again
    └── BlobError
        ├── BlobTooLarge    a stream went past its limit; nothing was stored
        ├── BlobNotFound    no blob with that sha256
        └── RangeNotSatisfiable the byte range lies outside the blob
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError, OperationalError

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
    "StoreUnavailable",
    "mapped_integrity_errors",
    "unavailable_store",
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


class StoreUnavailable(StoreError):
    code = "store_unavailable"


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


def unavailable_store(error: BaseException | None) -> StoreUnavailable | None:
    """The ``StoreUnavailable`` a driver's operational error stands for, or None.

    PostgreSQL's deadlock and serialization failures, SQLite's "database is locked" and a
    dropped connection all arrive as ``OperationalError``: each aborts the transaction,
    and retrying the same work is the remedy. The message is generic (the driver's, with
    its SQL, stays in the cause and the logs).
    """
    if not isinstance(error, OperationalError):
        return None
    sqlstate = getattr(error.orig, "sqlstate", None)
    reason = f" (SQLSTATE {sqlstate})" if sqlstate else ""
    return StoreUnavailable(f"the database is busy or unreachable{reason}; try again")
