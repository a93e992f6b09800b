"""The audit log can be appended to and read, and offers nothing else."""

from __future__ import annotations

import inspect
from datetime import timedelta

from fleet.store.repositories import AuditLog, SqlAuditLog
from fleet.store.uow import SqlUnitOfWork
from tests.store.builders import NOW


def test_entries_read_back_in_order_with_ids(uow: SqlUnitOfWork) -> None:
    with uow:
        first = uow.audit.append(
            at=NOW,
            actor="alice",
            action="rollout.start",
            subject="rollout/r1",
            detail={"waves": [1, 10, 100], "gate": {"max_failure_rate": 0.02}},
        )
        second = uow.audit.append(
            at=NOW + timedelta(minutes=1),
            actor="engine",
            action="rollout.pause",
            subject="rollout/r1",
            detail={"reason": "failure rate 0.05 > 0.02"},
        )
        uow.audit.append(at=NOW, actor="bob", action="token.create", subject="token/ci", detail={})
        uow.commit()
    with uow:
        assert uow.audit.read(subject="rollout/r1") == [first, second]
        assert uow.audit.read(subject="rollout/r1", after_id=first.id) == [second]
        assert len(uow.audit.read(limit=2)) == 2
    assert first.id < second.id
    assert first.detail["gate"] == {"max_failure_rate": 0.02}


def test_the_audit_log_has_no_way_to_change_or_remove_an_entry() -> None:
    for log in (AuditLog, SqlAuditLog):
        public = {
            name
            for name, _ in inspect.getmembers(log, inspect.isfunction)
            if not name.startswith("_")
        }
        assert public == {"append", "read"}, log
