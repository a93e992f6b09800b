"""What the services are built on, named here for the edges that wire them and catch their errors.

The composition root hands routes and transports a unit-of-work factory and a blob store,
and the problem and CoAP error mappers must recognise the store's errors that a service
lets through (a missing blob, a write the database refused). They name those types from
here, so ``fleet.api`` and ``fleet.transports`` depend on the services and never on
``fleet.store`` itself (docs/architecture.md §1).
"""

from __future__ import annotations

from fleet.store import (
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    Conflict,
    NotFound,
    RangeNotSatisfiable,
    StoreError,
    StoreUnavailable,
    UnitOfWork,
)

__all__ = [
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "Conflict",
    "NotFound",
    "RangeNotSatisfiable",
    "StoreError",
    "StoreUnavailable",
    "UnitOfWork",
]
