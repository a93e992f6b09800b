"""Throwaway PostgreSQL databases: created under a unique name, always dropped.

The server is found at ``TINYFLEET_TEST_POSTGRES`` (default: trust auth on
127.0.0.1:5432, user ``postgres``, maintenance database ``test``); when it is
unreachable the test asking for one is skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

__all__ = ["POSTGRES_ADMIN_URL", "throwaway_database"]

POSTGRES_ADMIN_URL = os.environ.get(
    "TINYFLEET_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """Yield the URL of a new, empty database; drop it (forcibly) afterwards."""
    admin = create_engine(
        POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {error.orig}")
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
