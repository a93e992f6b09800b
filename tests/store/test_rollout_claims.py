"""A device is in at most one active rollout, and the database keeps it so.

The rule used to be a read before the write; on PostgreSQL two creations at once could
both pass the read. These tests write claims for real on SQLite and PostgreSQL, and fire
concurrent creations through the service on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from fleet.domain.rollout import Member, Rollout, RolloutStatus
from fleet.domain.rollout_plan import Plan, Target, Wave
from fleet.services.errors import InvalidInput
from fleet.services.rollouts import create_rollout
from fleet.store import AlreadyExists
from fleet.store.db import make_session_factory
from fleet.store.uow import SqlUnitOfWork
from tests.store.builders import CLASS, NOW, device, device_class, release, trusting_root

PLAN = Plan(waves=(Wave(percent=100),))
FLEET = [f"dev-{n:02}" for n in range(40)]


def _seed(uow: SqlUnitOfWork) -> str:
    with uow:
        uow.device_classes.add(device_class())
        for device_id in FLEET:
            uow.devices.add(device(device_id))
        uow.releases.add(release())
        uow.commit()
    return release().digest


def _rollout(rollout_id: str) -> Rollout:
    return Rollout(
        id=rollout_id,
        release_digest=release().digest,
        plan=PLAN,
        target=Target(CLASS),
        population=2,
        created_at=NOW,
    )


def test_a_claimed_device_cannot_join_a_second_active_rollout(uow: SqlUnitOfWork) -> None:
    _seed(uow)
    members = [Member("dev-00", 0, None), Member("dev-01", 1, None)]
    with uow:
        uow.rollouts.add(_rollout("first"), members)
        uow.commit()
    with uow:
        with pytest.raises(AlreadyExists):
            uow.rollouts.add(_rollout("second"), [Member("dev-01", 0, None)])
        # The failed add left nothing behind, and the unit of work is still usable.
        assert uow.rollouts.get("second") is None
        assert uow.rollouts.claims(["dev-00", "dev-01", "dev-02"]) == {
            "dev-00": "first",
            "dev-01": "first",
        }
        uow.rollouts.add(_rollout("second"), [Member("dev-02", 0, None)])
        uow.commit()


def test_a_rollout_that_ends_lets_its_devices_go(uow: SqlUnitOfWork) -> None:
    _seed(uow)
    with uow:
        uow.rollouts.add(_rollout("first"), [Member("dev-00", 0, None)])
        uow.commit()
    with uow:
        uow.rollouts.save(replace(_rollout("first"), status=RolloutStatus.ABORTED), at=NOW)
        uow.commit()
    with uow:
        assert uow.rollouts.busy_devices(["dev-00"]) == set()
        uow.rollouts.add(_rollout("second"), [Member("dev-00", 0, None)])
        uow.commit()


def test_detaching_a_device_removes_it_from_the_rollout(uow: SqlUnitOfWork) -> None:
    _seed(uow)
    with uow:
        uow.rollouts.add(_rollout("first"), [Member("dev-00", 0, None), Member("dev-01", 1, None)])
        uow.commit()
    with uow:
        assert uow.rollouts.detach("dev-00") == "first"
        assert uow.rollouts.detach("dev-05") is None
        uow.commit()
    with uow:
        assert [m.device_id for m in uow.rollouts.members("first")] == ["dev-01"]
        assert uow.rollouts.claims(["dev-00", "dev-01"]) == {"dev-01": "first"}


def test_concurrent_rollout_creations_on_postgres_never_share_a_device(
    postgres_engine: Engine,
) -> None:
    session_factory: Callable[[], Session] = make_session_factory(postgres_engine)
    digest = _seed(SqlUnitOfWork(session_factory))
    creators = 8
    start = threading.Barrier(creators)
    outcomes: dict[str, object] = {}

    def create(n: int) -> None:
        start.wait()
        try:
            rollout = create_rollout(
                SqlUnitOfWork(session_factory),
                release_digest=digest,
                plan=PLAN,
                target=Target(CLASS),
                root=trusting_root(),
                actor="test",
                now=NOW,
                rollout_id=f"concurrent-{n}",
            ).rollout
            outcomes[f"concurrent-{n}"] = rollout.population
        except InvalidInput as exc:  # every device already taken: the expected loser
            outcomes[f"concurrent-{n}"] = exc
        except Exception as exc:
            outcomes[f"concurrent-{n}"] = exc
            raise

    threads = [threading.Thread(target=create, args=(n,)) for n in range(creators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(outcomes) == creators, "every creation finished"
    unexpected = [o for o in outcomes.values() if not isinstance(o, int | InvalidInput)]
    assert unexpected == []
    uow = SqlUnitOfWork(session_factory)
    with uow:
        created = [rid for rid, outcome in outcomes.items() if isinstance(outcome, int)]
        memberships = Counter(m.device_id for rid in created for m in uow.rollouts.members(rid))
        held = uow.rollouts.claims(FLEET)
    print(
        f"\n{creators} concurrent creations: {len(created)} created, populations "
        f"{sorted(o for o in outcomes.values() if isinstance(o, int))}"
    )
    assert created, "at least one creation won devices"
    assert max(memberships.values()) == 1, "no device is in two rollouts"
    assert set(memberships) == set(FLEET) == set(held), "every device ended up in one"
    assert sum(o for o in outcomes.values() if isinstance(o, int)) == len(FLEET)
