"""Readiness: whether this replica should be sent work now (``GET /readyz``).

Liveness (``/healthz``) only says the process answers. Readiness also asks what a
request needs: the database reachable, its schema at the migrations' head (a replica
of an older release must not write into a newer schema, nor a newer one into an old),
the broker connected (without it no director manifest goes out and no device report
comes in), and the process not draining after SIGTERM (the load balancer should stop
sending requests before it stops answering them).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from fleet.store.migrate import alembic_config

__all__ = ["OK", "ReadinessProbe"]

_log = structlog.get_logger(__name__)
OK = "ok"


class ReadinessProbe:
    """Called per ``/readyz``: check name → ``"ok"`` or why not; ready when all are ok."""

    def __init__(
        self,
        engine: Engine,
        *,
        broker_connected: Callable[[], bool],
        draining: Callable[[], bool],
    ) -> None:
        self._engine = engine
        self._broker_connected = broker_connected
        self._draining = draining
        # The code's heads are fixed for the life of the process.
        self._heads = frozenset(ScriptDirectory.from_config(alembic_config(engine.url)).get_heads())

    def __call__(self) -> dict[str, str]:
        checks = {"draining": "draining after SIGTERM" if self._draining() else OK}
        checks |= self._database()
        checks["broker"] = OK if self._broker_connected() else "not connected"
        return checks

    def _database(self) -> dict[str, str]:
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                current = frozenset(MigrationContext.configure(connection).get_current_heads())
        except SQLAlchemyError as exc:
            _log.warning("readiness_database_unreachable", error=str(exc))
            return {"database": "unreachable", "migrations": "unknown"}
        if current == self._heads:
            migrations = OK
        else:
            migrations = (
                f"database at {sorted(current) or 'no revision'}, code at {sorted(self._heads)}"
            )
        return {"database": OK, "migrations": migrations}
