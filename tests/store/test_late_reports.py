"""A status report that reaches the store after a later one is history, not a replay.

Two replicas ingest one device's messages independently, so the order they commit in is
not the order the device sent them in. The late report must still reach the history a
rollout gate reads; a report already recorded, or older than the window, must not.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from fleet.domain.records import NO_COUNTER_YET
from fleet.domain.replay_window import WINDOW, lowest_refused
from fleet.services.status import IncomingMessage, StatusOutcome, ingest_status_batch
from schemas import DeviceState, StatusReport
from signer.keys import SigningKey
from signer.signing import sign_model
from tests.store.signed_reports import (
    enroll_signed,
    ingest_at_once,
    status_events,
    uow_factory,
)


def _status(
    device_id: str, key: SigningKey, counter: int, state: DeviceState = DeviceState.IDLE
) -> IncomingMessage:
    report = StatusReport(
        device_id=device_id,
        counter=counter,
        sent=datetime.now(UTC),
        state=state,
        error_code="boot_loop" if state is DeviceState.FAILED else None,
    )
    return IncomingMessage(device_id, sign_model(report, [key]).to_bytes(), datetime.now(UTC))


def _ingest(engine: Engine, *messages: IncomingMessage) -> list[StatusOutcome]:
    return ingest_status_batch(uow_factory(engine)(), list(messages))


def test_a_late_failure_joins_the_history_and_the_newest_report_keeps_the_state(
    engine: Engine,
) -> None:
    keys = enroll_signed(engine, 1)
    ((device_id, key),) = keys.items()

    (newest,) = _ingest(engine, _status(device_id, key, 7, DeviceState.HEALTHY))
    (late,) = _ingest(engine, _status(device_id, key, 6, DeviceState.FAILED))

    assert (newest.accepted, newest.late) == (True, False)
    assert (late.accepted, late.late, late.reason) == (True, True, None)
    with uow_factory(engine)() as uow:
        device = uow.devices.get(device_id)
        history = uow.status_events.history(device_id)
    assert device is not None
    assert (device.state, device.status_counter) == (DeviceState.HEALTHY, 7)
    assert {(e.counter, e.state, e.error_code) for e in history} == {
        (7, DeviceState.HEALTHY, None),
        (6, DeviceState.FAILED, "boot_loop"),
    }


def test_a_report_already_recorded_is_refused_as_replayed(engine: Engine) -> None:
    ((device_id, key),) = enroll_signed(engine, 1).items()
    first = _status(device_id, key, 3)
    _ingest(engine, _status(device_id, key, 4))

    in_one_batch = _ingest(engine, first, first)
    again_later = _ingest(engine, first)
    the_newest_again = _ingest(engine, _status(device_id, key, 4))

    assert [(o.accepted, o.reason) for o in in_one_batch] == [(True, None), (False, "replayed")]
    assert [(o.accepted, o.reason) for o in again_later] == [(False, "replayed")]
    assert [(o.accepted, o.reason) for o in the_newest_again] == [(False, "replayed")]
    assert status_events(engine) == 2


def test_a_report_older_than_the_window_is_refused(engine: Engine) -> None:
    ((device_id, key),) = enroll_signed(engine, 1).items()
    newest = 1000
    _ingest(engine, _status(device_id, key, newest))

    stale, oldest_taken = _ingest(
        engine,
        _status(device_id, key, newest - WINDOW),
        _status(device_id, key, newest - WINDOW + 1),
    )

    assert (stale.accepted, stale.reason) == (False, "replayed")
    assert (oldest_taken.accepted, oldest_taken.late) == (True, True)


def test_a_device_that_reported_nothing_yet_has_its_first_counter_taken(engine: Engine) -> None:
    ((device_id, key),) = enroll_signed(engine, 1).items()

    (first,) = _ingest(engine, _status(device_id, key, 0))

    assert (first.accepted, first.late) == (True, False)


@given(newest=st.integers(NO_COUNTER_YET, 2**53 - 1), counter=st.integers(0, 2**53 - 1))
def test_the_window_takes_exactly_the_counters_just_below_the_newest(
    newest: int, counter: int
) -> None:
    taken = counter > lowest_refused(newest)

    assert taken == (counter > newest - WINDOW)
    assert lowest_refused(newest) >= NO_COUNTER_YET


def test_replicas_delivering_the_same_reports_in_opposite_orders_record_each_once(
    postgres_engine: Engine,
) -> None:
    keys = enroll_signed(postgres_engine, 40)
    messages = {d: [_status(d, k, 5), _status(d, k, 7)] for d, k in keys.items()}
    oldest_first = [m for pair in messages.values() for m in pair]
    newest_first = [m for pair in messages.values() for m in reversed(pair)]
    accepted = ingest_at_once(postgres_engine, oldest_first, newest_first)

    assert sum(accepted) == 2 * len(keys)  # each report once, whichever replica took it
    assert status_events(postgres_engine) == 2 * len(keys)
    with uow_factory(postgres_engine)() as uow:
        assert {uow.devices.get(d).status_counter for d in keys} == {7}  # type: ignore[union-attr]
