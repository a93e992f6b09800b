"""Who may run the rollout engine: one process at a time across replicas.

On PostgreSQL a session-level advisory lock (``pg_try_advisory_lock``) held on a
dedicated connection: the lock lives exactly as long as the connection, so a replica
that dies (even SIGKILLed) releases it and another takes over on its next try. On
SQLite there is no such lock, and a SQLite database serves one server process: the
lease is always granted.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["ENGINE_LOCK_KEY", "EngineLease"]

# An arbitrary, fixed 64-bit key: "tinyfleet rollout engine".
ENGINE_LOCK_KEY = 0x7446_726F_6C6C_6F75


class EngineLease:
    def __init__(self, engine: Engine, *, key: int = ENGINE_LOCK_KEY) -> None:
        self._engine = engine
        self._key = key
        self._connection: Connection | None = None

    def hold(self) -> bool:
        """True if this process holds the lease now (taking it if it is free)."""
        if self._engine.dialect.name != "postgresql":
            return True
        try:
            if self._connection is not None:
                self._connection.execute(text("SELECT 1"))
                self._connection.commit()
                return True
            connection = self._engine.connect()
            taken = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            ).scalar_one()
            connection.commit()
        except SQLAlchemyError:
            self.release()
            return False
        if not taken:
            connection.close()
            return False
        self._connection = connection
        return True

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            connection.commit()
        except SQLAlchemyError:
            pass  # a dead connection released the lock with it
        finally:
            connection.close()
