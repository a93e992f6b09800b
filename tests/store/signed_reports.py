"""Enrolled devices with real keys and their signed status reports, for ingest tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, text

from fleet.services.status import IncomingMessage, ingest_status_batch
from fleet.store.db import make_session_factory
from fleet.store.uow import SqlUnitOfWork
from schemas import DeviceState, StatusReport
from signer.keys import SigningKey
from signer.signing import sign_model
from tests.store.builders import device, device_class

__all__ = ["enroll_signed", "ingest_at_once", "signed_status", "status_events", "uow_factory"]


def uow_factory(engine: Engine) -> Callable[[], SqlUnitOfWork]:
    sessions = make_session_factory(engine)
    return lambda: SqlUnitOfWork(sessions)


def enroll_signed(engine: Engine, count: int) -> dict[str, SigningKey]:
    keys = {f"dev-{i:03d}": SigningKey.generate() for i in range(count)}
    with uow_factory(engine)() as uow:
        uow.device_classes.add(device_class())
        for device_id, key in keys.items():
            uow.devices.add(device(device_id, public_key_hex=key.public.public))
        uow.commit()
    return keys


def signed_status(device_id: str, key: SigningKey, counter: int) -> IncomingMessage:
    report = StatusReport(
        device_id=device_id, counter=counter, sent=datetime.now(UTC), state=DeviceState.IDLE
    )
    return IncomingMessage(device_id, sign_model(report, [key]).to_bytes(), datetime.now(UTC))


def ingest_at_once(engine: Engine, *batches: list[IncomingMessage]) -> list[int]:
    """Each batch ingested by its own thread, as replicas would, all let go together;
    how many reports each accepted. Re-raises what a thread raised."""
    new_uow = uow_factory(engine)
    start = threading.Barrier(len(batches), timeout=10)
    raised: list[BaseException] = []
    accepted: list[int] = []

    def ingest(batch: list[IncomingMessage]) -> None:
        try:
            start.wait()
            accepted.append(sum(o.accepted for o in ingest_status_batch(new_uow(), batch)))
        except BaseException as exc:
            raised.append(exc)

    threads = [threading.Thread(target=ingest, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if raised:
        raise raised[0]
    return accepted


def status_events(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM status_event")).scalar_one())
