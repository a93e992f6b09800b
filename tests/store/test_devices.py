"""Devices: targeting filters, bulk enrolment, reported state and counters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from fleet.domain.records import NO_COUNTER_YET, InstalledComponent
from fleet.store.errors import AlreadyExists, MissingReference, NotFound
from fleet.store.uow import SqlUnitOfWork
from schemas import DeviceState
from tests.store import builders
from tests.store.builders import NOW, digest


@pytest.fixture
def fleet(uow: SqlUnitOfWork) -> None:
    """Four devices in two classes, with tags and running releases."""
    with uow:
        uow.device_classes.add(builders.device_class())
        uow.device_classes.add(builders.device_class("esp32s3"))
        uow.devices.add_many(
            [
                builders.device("a", tags=frozenset({"eu", "line-3"})),
                builders.device("b", tags=frozenset({"eu"}), running_release_digest=digest("r1")),
                builders.device("c", device_class="esp32s3", tags=frozenset({"eu", "line-3"})),
                builders.device("d", running_release_digest=digest("r1")),
            ]
        )
        uow.commit()


def _ids(uow: SqlUnitOfWork, **filters: Any) -> list[str]:
    with uow:
        return [d.id for d in uow.devices.find(**filters)]


@pytest.mark.usefixtures("fleet")
def test_find_combines_class_tags_and_running_release(uow: SqlUnitOfWork) -> None:
    assert _ids(uow) == ["a", "b", "c", "d"]
    assert _ids(uow, device_class=builders.CLASS) == ["a", "b", "d"]
    assert _ids(uow, tags={"eu", "line-3"}) == ["a", "c"]
    assert _ids(uow, tags={"eu"}, device_class=builders.CLASS) == ["a", "b"]
    assert _ids(uow, running_release_digest=digest("r1")) == ["b", "d"]
    assert _ids(uow, tags={"nowhere"}) == []


@pytest.mark.usefixtures("fleet")
def test_find_pages_by_id(uow: SqlUnitOfWork) -> None:
    assert _ids(uow, limit=2) == ["a", "b"]
    assert _ids(uow, after_id="b", limit=2) == ["c", "d"]


@pytest.mark.usefixtures("fleet")
def test_found_devices_carry_their_tags(uow: SqlUnitOfWork) -> None:
    with uow:
        tags = {d.id: d.tags for d in uow.devices.find()}
    assert tags == {
        "a": {"eu", "line-3"},
        "b": {"eu"},
        "c": {"eu", "line-3"},
        "d": frozenset(),
    }


@pytest.mark.usefixtures("fleet")
def test_set_tags_replaces_them(uow: SqlUnitOfWork) -> None:
    with uow:
        uow.devices.set_tags("a", {"us"})
        uow.commit()
    assert _ids(uow, tags={"us"}) == ["a"]
    assert _ids(uow, tags={"line-3"}) == ["c"]


def test_bulk_enrolment_of_a_thousand_devices(uow: SqlUnitOfWork) -> None:
    with uow:
        uow.device_classes.add(builders.device_class())
        uow.devices.add_many(
            builders.device(f"dev-{n:04}", tags=frozenset({f"batch-{n % 3}"})) for n in range(1000)
        )
        uow.commit()
    assert len(_ids(uow)) == 1000
    assert len(_ids(uow, tags={"batch-0"})) == 334


def test_enrolling_an_id_twice_is_already_exists(uow: SqlUnitOfWork, device_id: str) -> None:
    with uow, pytest.raises(AlreadyExists):
        uow.devices.add(builders.device(device_id, keyid=digest("another key")))


def test_one_key_cannot_enrol_two_devices(uow: SqlUnitOfWork, device_id: str) -> None:
    with uow, pytest.raises(AlreadyExists):
        uow.devices.add(builders.device("dev-2", keyid=builders.device(device_id).keyid))


def test_a_device_of_an_unknown_class_is_a_missing_reference(uow: SqlUnitOfWork) -> None:
    with uow, pytest.raises(MissingReference):
        uow.devices.add(builders.device(device_class="no-such-class"))


def test_reported_state_is_stored_when_the_counter_advances(
    uow: SqlUnitOfWork, device_id: str
) -> None:
    firmware = InstalledComponent(kind="firmware", version="2.1.0", security_version=3)
    with uow:
        assert uow.devices.update_reported(
            device_id,
            counter=0,
            seen_at=NOW,
            state=DeviceState.HEALTHY,
            running_release_digest=digest("kws-1.0"),
            components=[firmware],
        )
        uow.commit()
    with uow:
        stored = uow.devices.get(device_id)
    assert stored is not None
    assert (stored.status_counter, stored.state, stored.components, stored.last_seen) == (
        0,
        DeviceState.HEALTHY,
        (firmware,),
        NOW,
    )
    assert stored.running_release_digest == digest("kws-1.0")


def test_a_replayed_or_overtaken_counter_changes_nothing(
    uow: SqlUnitOfWork, device_id: str
) -> None:
    with uow:
        assert uow.devices.accept_counter(device_id, 5, seen_at=NOW)
        uow.commit()
    with uow:
        assert not uow.devices.accept_counter(device_id, 5, seen_at=NOW + timedelta(hours=1))
        assert not uow.devices.update_reported(
            device_id,
            counter=4,
            seen_at=NOW + timedelta(hours=1),
            state=DeviceState.FAILED,
            running_release_digest=None,
            components=[],
        )
        uow.commit()
    with uow:
        stored = uow.devices.get(device_id)
    assert stored is not None
    assert (stored.status_counter, stored.state, stored.last_seen) == (5, None, NOW)


def test_a_new_device_has_accepted_no_counter(uow: SqlUnitOfWork, device_id: str) -> None:
    with uow:
        stored = uow.devices.get(device_id)
    assert stored is not None
    assert stored.status_counter == NO_COUNTER_YET
    assert stored.director_sequence == 0


def test_online_flag_follows_the_last_will(uow: SqlUnitOfWork, device_id: str) -> None:
    with uow:
        uow.devices.set_online(device_id, True, at=NOW)
        uow.commit()
    with uow:
        uow.devices.set_online(device_id, False, at=NOW + timedelta(minutes=1))
        uow.commit()
    with uow:
        stored = uow.devices.get(device_id)
    assert stored is not None
    assert (stored.online, stored.last_seen) == (False, NOW + timedelta(minutes=1))


def test_changing_an_unknown_device_is_not_found(uow: SqlUnitOfWork) -> None:
    with uow:
        with pytest.raises(NotFound):
            uow.devices.accept_counter("nobody", 1, seen_at=NOW)
        with pytest.raises(NotFound):
            uow.devices.set_online("nobody", True, at=NOW)
        with pytest.raises(NotFound):
            uow.devices.set_tags("nobody", {"eu"})


def test_changes_are_visible_later_in_the_same_unit_of_work(uow: SqlUnitOfWork) -> None:
    with uow:
        uow.device_classes.add(builders.device_class())
        uow.devices.add(builders.device("a", tags=frozenset({"eu", "line-3"})))
        uow.devices.set_tags("a", {"eu", "us"})
        uow.devices.accept_counter("a", 3, seen_at=NOW)
        uow.director.next_sequence("a")
        stored = uow.devices.get("a")
    assert stored is not None
    assert (stored.tags, stored.status_counter, stored.director_sequence) == ({"eu", "us"}, 3, 1)


@pytest.mark.usefixtures("fleet")
def test_a_batch_of_counters_advances_only_where_each_is_higher(uow: SqlUnitOfWork) -> None:
    later = NOW + timedelta(minutes=5)
    with uow:
        assert uow.devices.accept_counter("b", 7, seen_at=NOW)
        # 450 ids: more than one statement's worth; unknown ids are simply not advanced
        batch = {"a": (3, later), "b": (7, later), "c": (9, later)}
        batch |= {f"ghost-{i:03d}": (1, later) for i in range(447)}
        assert uow.devices.accept_counters(batch) == {"a", "c"}
        assert uow.devices.accept_counters({"a": (3, later), "c": (10, later)}) == {"c"}
        assert uow.devices.accept_counters({}) == set()
        uow.commit()
    with uow:
        found = {d.id: d for d in uow.devices.find()}
        signers = uow.devices.signers(["a", "b", "c", "d", "nobody"])
    assert {i: (d.status_counter, d.last_seen) for i, d in found.items()} == {
        "a": (3, later), "b": (7, NOW), "c": (10, later), "d": (NO_COUNTER_YET, None)
    }  # fmt: skip
    assert sorted(signers) == ["a", "b", "c", "d"]
    assert (signers["c"].status_counter, signers["c"].device_class) == (10, "esp32s3")


@pytest.mark.usefixtures("fleet")
def test_revoking_marks_the_device_once_and_its_signer_says_so(uow: SqlUnitOfWork) -> None:
    later = NOW + timedelta(minutes=5)
    with uow:
        uow.devices.set_online("b", True, at=NOW)
        assert uow.devices.revoke("b", at=later)
        assert not uow.devices.revoke("b", at=later + timedelta(minutes=1))
        assert not uow.devices.revoke("nobody", at=later)
        uow.commit()
    with uow:
        device = uow.devices.get("b")
        signers = uow.devices.signers(["a", "b"])
    assert device is not None and (device.revoked_at, device.online) == (later, False)
    assert (signers["a"].revoked, signers["b"].revoked) == (False, True)
