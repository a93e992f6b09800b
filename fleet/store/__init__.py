"""Persistence for the fleet server: SQLModel tables, repositories, unit of work,
migrations and the content-addressed blob store.

Wiring (in ``fleet/app.py``, never at import time)::

    upgrade(settings.resolved_database_url)
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    new_uow = lambda: SqlUnitOfWork(sessions)
    blobs = BlobStore(settings.blob_dir)
"""

from fleet.store.blobs import BlobStore
from fleet.store.db import make_engine, make_session_factory
from fleet.store.errors import (
    AlreadyExists,
    BlobError,
    BlobNotFound,
    BlobTooLarge,
    Conflict,
    MissingReference,
    NotFound,
    RangeNotSatisfiable,
    StoreError,
    StoreUnavailable,
)
from fleet.store.migrate import upgrade
from fleet.store.uow import SqlUnitOfWork, UnitOfWork

__all__ = [
    "AlreadyExists",
    "BlobError",
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "Conflict",
    "MissingReference",
    "NotFound",
    "RangeNotSatisfiable",
    "SqlUnitOfWork",
    "StoreError",
    "StoreUnavailable",
    "UnitOfWork",
    "make_engine",
    "make_session_factory",
    "upgrade",
]
