"""Every record comes back from the database exactly as it went in, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import StatementError

from fleet.domain.records import (
    ApiToken,
    Artifact,
    Calibration,
    InstalledComponent,
    Role,
    StatusEvent,
)
from fleet.store.uow import SqlUnitOfWork
from schemas import Action, DeviceState
from tests.store import builders
from tests.store.builders import NOW, digest


def test_device_class_round_trips(uow: SqlUnitOfWork) -> None:
    bare = builders.device_class("esp32s3", supported_ops=frozenset(), cpu=None)
    with uow:
        uow.device_classes.add(builders.device_class())
        uow.device_classes.add(bare)
        uow.commit()
    with uow:
        assert uow.device_classes.get(builders.CLASS) == builders.device_class()
        assert uow.device_classes.get("esp32s3") == bare
        assert [c.name for c in uow.device_classes.all()] == ["esp32s3", builders.CLASS]
        assert uow.device_classes.get("unknown") is None


def test_device_round_trips_with_every_field_set(uow: SqlUnitOfWork) -> None:
    full = builders.device(
        tags=frozenset({"eu", "line-3"}),
        director_sequence=7,
        status_counter=41,
        state=DeviceState.HEALTHY,
        running_release_digest=digest("kws-1.0"),
        components=(
            InstalledComponent(kind="firmware", version="2.1.0", security_version=3),
            InstalledComponent(kind="model", version="kws-8", security_version=1),
        ),
        last_seen=NOW + timedelta(minutes=5),
        online=True,
    )
    with uow:
        uow.device_classes.add(builders.device_class())
        uow.devices.add(full)
        uow.devices.add(builders.device("dev-bare"))
        uow.commit()
    with uow:
        assert uow.devices.get(full.id) == full
        assert uow.devices.get("dev-bare") == builders.device("dev-bare")
        assert uow.devices.get("nobody") is None


def test_artifact_round_trips(uow: SqlUnitOfWork) -> None:
    artifact = Artifact(
        sha256=digest("model"), length=53_000, media_type="application/vnd.tflite", created_at=NOW
    )
    with uow:
        uow.artifacts.add(artifact)
        uow.commit()
    with uow:
        assert uow.artifacts.get(artifact.sha256) == artifact
        assert uow.artifacts.all() == [artifact]


def test_releases_round_trip_and_list_newest_first(uow: SqlUnitOfWork) -> None:
    older = builders.release("kws-1.0")
    newer = builders.release("kws-1.1", created_at=NOW + timedelta(hours=1))
    with uow:
        uow.device_classes.add(builders.device_class())
        uow.device_classes.add(builders.device_class("esp32s3"))
        uow.releases.add(older)
        uow.releases.add(newer)
        uow.releases.add(builders.release("other-1.0", device_class="esp32s3"))
        uow.commit()
    with uow:
        assert uow.releases.get(older.digest) == older
        assert uow.releases.find(device_class=builders.CLASS) == [newer, older]
        assert len(uow.releases.find()) == 3


def test_latest_calibration_is_the_highest_version(uow: SqlUnitOfWork, device_id: str) -> None:
    versions = [Calibration(device_id, v, digest(f"cal {v}"), 96) for v in (1, 3, 2)]
    with uow:
        for calibration in versions:
            uow.calibrations.add(calibration)
        uow.commit()
    with uow:
        assert uow.calibrations.latest(device_id) == versions[1]
        assert uow.calibrations.get(device_id, 2) == versions[2]
        assert uow.calibrations.latest("nobody") is None


def test_director_record_round_trips(uow: SqlUnitOfWork, device_id: str) -> None:
    record = builders.director_record(1, action=Action.ROLLBACK, rollout_id=None, wave=None)
    with uow:
        uow.director.add(record)
        uow.commit()
    with uow:
        assert uow.director.latest(device_id) == record


def test_status_history_is_newest_first_and_bounded_by_time(
    uow: SqlUnitOfWork, device_id: str
) -> None:
    events = [
        StatusEvent(device_id, 1, DeviceState.DOWNLOADING, NOW, digest("kws-1.0")),
        StatusEvent(
            device_id,
            2,
            DeviceState.FAILED,
            NOW + timedelta(minutes=1),
            digest("kws-1.0"),
            error_code="hash_mismatch",
            detail="model sha256 differs",
        ),
    ]
    with uow:
        for event in events:
            uow.status_events.append(event)
        uow.commit()
    with uow:
        assert uow.status_events.history(device_id) == events[::-1]
        assert uow.status_events.history(device_id, since=NOW + timedelta(seconds=1)) == [events[1]]
        assert uow.status_events.history(device_id, limit=1) == [events[1]]


def test_token_round_trips_and_revocation_keeps_the_first_moment(uow: SqlUnitOfWork) -> None:
    token = ApiToken(token_sha256=digest("secret"), name="ci", role=Role.OPERATOR, created_at=NOW)
    with uow:
        uow.tokens.add(token)
        uow.commit()
    with uow:
        assert uow.tokens.get(token.token_sha256) == token
        uow.tokens.revoke(token.token_sha256, at=NOW + timedelta(days=1))
        uow.tokens.revoke(token.token_sha256, at=NOW + timedelta(days=2))
        uow.commit()
    with uow:
        revoked = uow.tokens.get(token.token_sha256)
        assert revoked is not None
        assert revoked.revoked_at == NOW + timedelta(days=1)
        assert not revoked.active
        assert uow.tokens.all() == [revoked]
        assert uow.tokens.get(digest("other")) is None


def test_timestamps_come_back_in_utc_whatever_zone_went_in(uow: SqlUnitOfWork) -> None:
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
    with uow:
        uow.artifacts.add(Artifact(digest("a"), 1, "application/octet-stream", tokyo))
        uow.commit()
    with uow:
        stored = uow.artifacts.get(digest("a"))
    assert stored is not None
    assert stored.created_at == NOW
    assert stored.created_at.tzinfo is UTC


def test_a_naive_timestamp_is_refused(uow: SqlUnitOfWork) -> None:
    with uow, pytest.raises(StatementError, match="naive datetime"):
        uow.artifacts.add(
            Artifact(digest("a"), 1, "application/octet-stream", datetime(2026, 1, 1))
        )
