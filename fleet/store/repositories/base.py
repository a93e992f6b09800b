"""What every SQL repository shares: the session and flushing with mapped errors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

from sqlmodel import Session

from fleet.store.errors import mapped_integrity_errors
from fleet.store.tables import FleetTable

__all__ = ["SqlRepository", "chunked"]

T = TypeVar("T")

# Stays well under SQLite's and PostgreSQL's limits on bound parameters per statement.
_CHUNK = 500


def chunked(items: Iterable[T], size: int = _CHUNK) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class SqlRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def _insert(self, rows: Sequence[FleetTable]) -> None:
        # Flushing inside a savepoint makes a constraint violation surface at the call
        # that caused it, and leaves the rest of the unit of work usable afterwards.
        with mapped_integrity_errors(), self._session.begin_nested():
            self._session.add_all(rows)
