"""The unit of work keeps nothing unless told to commit."""

from __future__ import annotations

import pytest

from fleet.store.errors import AlreadyExists
from fleet.store.uow import SqlUnitOfWork, UnitOfWork
from tests.store import builders


def _class_names(uow: SqlUnitOfWork) -> list[str]:
    with uow:
        return [c.name for c in uow.device_classes.all()]


def test_committed_work_is_kept(uow: SqlUnitOfWork) -> None:
    with uow:
        uow.device_classes.add(builders.device_class())
        uow.commit()
    assert _class_names(uow) == [builders.CLASS]


def test_work_without_commit_is_rolled_back(uow: SqlUnitOfWork) -> None:
    with uow:
        uow.device_classes.add(builders.device_class())
    assert _class_names(uow) == []


def test_work_is_rolled_back_when_the_block_raises(uow: SqlUnitOfWork) -> None:
    with pytest.raises(RuntimeError, match="halfway"), uow:
        uow.device_classes.add(builders.device_class())
        raise RuntimeError("halfway")
    assert _class_names(uow) == []


def test_only_work_after_the_last_commit_is_rolled_back(uow: SqlUnitOfWork) -> None:
    with uow:
        uow.device_classes.add(builders.device_class())
        uow.commit()
        uow.device_classes.add(builders.device_class("esp32s3"))
    assert _class_names(uow) == [builders.CLASS]


def test_a_refused_write_leaves_the_rest_of_the_work_usable(uow: SqlUnitOfWork) -> None:
    with uow:
        uow.device_classes.add(builders.device_class())
        with pytest.raises(AlreadyExists):
            uow.device_classes.add(builders.device_class())
        uow.device_classes.add(builders.device_class("esp32s3"))
        uow.commit()
    assert _class_names(uow) == ["esp32s3", builders.CLASS]


def test_a_unit_of_work_is_not_entered_twice(uow: SqlUnitOfWork) -> None:
    with uow, pytest.raises(RuntimeError, match="already in use"), uow:
        pass


def test_commit_outside_the_block_is_a_mistake(uow: SqlUnitOfWork) -> None:
    with pytest.raises(RuntimeError, match="inside a `with` block"):
        uow.commit()


def test_the_sql_unit_of_work_satisfies_the_protocol(uow: SqlUnitOfWork) -> None:
    # Services are typed against the Protocol; mypy checks this assignment.
    typed: UnitOfWork = uow
    assert typed is uow
