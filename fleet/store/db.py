"""Engines and sessions for SQLite (the embedded default) and PostgreSQL.

Nothing here runs at import time: ``fleet/app.py`` calls ``make_engine`` once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "make_engine", "make_session_factory"]

# How long an SQLite writer waits for another to commit before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql+psycopg://...``."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        # SQLAlchemy's default PostgreSQL driver is psycopg2, which we do not ship.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, echo=echo)
    return create_engine(parsed, echo=echo, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # Repositories hand out records, not rows, so nothing needs reloading after commit.
    return sessionmaker(bind=engine, class_=Session, expire_on_commit=False)


def _sqlite_engine(url: URL, *, echo: bool) -> Engine:
    # Sessions may be used from the API's worker threads and the MQTT thread.
    engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_immediate)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module, which would otherwise
    # skip BEGIN before SELECT and DDL; ``_begin_immediate`` emits it instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers proceed while one writer commits.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _begin_immediate(connection: Any) -> None:
    # A deferred transaction that reads and then writes fails at once with "database is
    # locked" if another writer committed in between; busy_timeout cannot help it.
    # Taking the write lock up front makes writers queue instead, which is also what
    # makes director sequence allocation atomic on SQLite.
    connection.exec_driver_sql("BEGIN IMMEDIATE")
