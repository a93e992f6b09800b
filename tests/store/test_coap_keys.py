"""Devices' OSCORE keys in the store: found by kid, leases that never overlap, retired
with the device."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from fleet.services.coap_keys import coap_keys_for_kid, issue_coap_keys, reserve_sequences
from fleet.services.lifecycle import decommission_device, revoke_device
from fleet.store.blobs import BlobStore
from tests.store.signed_reports import enroll_signed, uow_factory

NOW = datetime(2026, 12, 8, tzinfo=UTC)


def test_keys_are_found_by_their_kid_and_new_keys_retire_the_old(engine: Engine) -> None:
    new_uow = uow_factory(engine)
    (device_id,) = enroll_signed(engine, 1)
    first = issue_coap_keys(new_uow(), device_id, actor="test", now=NOW)
    second = issue_coap_keys(new_uow(), device_id, actor="test", now=NOW)

    assert coap_keys_for_kid(new_uow(), first.device_kid) is None
    assert coap_keys_for_kid(new_uow(), second.device_kid) == (device_id, second)
    assert first.master_secret != second.master_secret
    with new_uow() as uow:
        audit = [e for e in uow.audit.read(subject=device_id) if e.action == "device.coap_keys"]
    assert len(audit) == 2
    assert all(second.master_secret not in str(e.detail) for e in audit)


def test_a_revoked_devices_keys_open_nothing_and_decommissioning_deletes_them(
    engine: Engine, tmp_path: Path
) -> None:
    new_uow = uow_factory(engine)
    revoked, retired = enroll_signed(engine, 2)
    keys = {d: issue_coap_keys(new_uow(), d, actor="test", now=NOW) for d in (revoked, retired)}

    revoke_device(new_uow(), revoked, manage_logins=False, actor="test", now=NOW)
    decommission_device(
        new_uow(), BlobStore(tmp_path), retired, manage_logins=False, actor="test", now=NOW
    )

    assert coap_keys_for_kid(new_uow(), keys[revoked].device_kid) is None
    with new_uow() as uow:
        assert uow.coap_keys.by_kid(keys[retired].device_kid) is None


def test_replicas_leasing_at_once_never_get_the_same_sequence_number(
    postgres_engine: Engine,
) -> None:
    new_uow = uow_factory(postgres_engine)
    (device_id,) = enroll_signed(postgres_engine, 1)
    issue_coap_keys(new_uow(), device_id, actor="test", now=NOW)
    start = threading.Barrier(4, timeout=10)
    leased: list[range] = []

    def lease() -> None:
        start.wait()
        for _ in range(25):
            leased.append(reserve_sequences(new_uow(), device_id, 16))

    threads = [threading.Thread(target=lease) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    numbers = [n for r in leased for n in r]
    assert len(leased) == 100
    assert len(numbers) == len(set(numbers)) == 1600
