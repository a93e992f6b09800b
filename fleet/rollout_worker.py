"""The rollout engine as a worker thread: acts on timers and device reports.

Every ``interval`` seconds, if this process holds the engine lease (one replica at a
time, ``fleet.store.leases``), it ticks every running rollout
(``fleet.services.rollouts.tick_rollouts``) and wakes the outbox pump when it queued
manifests. All state is in the database, so a restarted or another replica resumes
exactly where the last pass committed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from fleet.observability import Metrics
from fleet.services.director import Director
from fleet.services.rollouts import ExtraGates, tick_rollouts
from fleet.store import UnitOfWork
from fleet.store.leases import EngineLease
from fleet.workers import _Worker
from schemas import RootMetadata

__all__ = ["RolloutEngine"]

_log = structlog.get_logger(__name__)


class RolloutEngine(_Worker):
    name = "rollout_engine"

    def __init__(
        self,
        new_uow: Callable[[], UnitOfWork],
        director: Director,
        lease: EngineLease,
        *,
        clock: Callable[[], datetime],
        on_directions_queued: Callable[[], None],
        metrics: Metrics,
        root: Callable[[], RootMetadata],
        interval: float = 0.5,
        extra_gates: ExtraGates | None = None,
    ) -> None:
        super().__init__(metrics)
        self._new_uow = new_uow
        self._director = director
        self._lease = lease
        self._clock = clock
        self._on_queued = on_directions_queued
        self._interval = interval
        self._extra_gates = extra_gates
        self._root = root
        self._leading = False

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self._lease.release()

    def _step(self) -> None:
        leading = self._lease.hold()
        if leading != self._leading:
            _log.info("rollout_engine_lease", held=leading)
            self._leading = leading
        if leading:
            queued = tick_rollouts(
                self._new_uow,
                self._director,
                now=self._clock,
                root=self._root,
                extra_gates=self._extra_gates,
            )
            if queued:
                self._on_queued()
        self._stop.wait(self._interval)
