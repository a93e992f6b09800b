"""Small record builders: a test states only the fields it is about."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet.domain.records import Device, DeviceClass, DirectorRecord, Release
from fleet.store.uow import UnitOfWork
from schemas import Action, Component, ComponentKind, ReleaseManifest, Role, RoleKeys, RootMetadata
from signer.keys import SigningKey
from signer.signing import sign_model

NOW = datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
CLASS = "nrf52840"
DEVICE = "dev-1"
_THROWAWAY_KEY = SigningKey.generate()


def digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def trusting_root() -> RootMetadata:
    """A root whose one key holds every role, so it vouches for ``release()``'s."""
    key = _THROWAWAY_KEY.public
    return RootMetadata(
        version=1,
        expires=NOW + timedelta(days=365),
        keys={key.keyid: key},
        roles={role: RoleKeys(keyids=(key.keyid,), threshold=1) for role in Role},
    )


def device_class(name: str = CLASS, **changes: Any) -> DeviceClass:
    base = DeviceClass(
        name=name,
        ram_bytes=256 * 1024,
        flash_bytes=1024 * 1024,
        supported_ops=frozenset({"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"}),
        cpu="cortex-m4f@64MHz",
    )
    return replace(base, **changes)


def device(device_id: str = DEVICE, **changes: Any) -> Device:
    base = Device(
        id=device_id,
        device_class=CLASS,
        public_key_hex=digest(f"pub {device_id}"),
        keyid=digest(f"keyid {device_id}"),
        enrolled_at=NOW,
    )
    return replace(base, **changes)


def release(label: str = "kws-1.0", **changes: Any) -> Release:
    """A release whose envelope holds a real manifest (signed by a throwaway key), so
    services that read its components and constraints can."""
    version = label.rsplit("-", 1)[-1]
    firmware = Component(
        kind=ComponentKind.FIRMWARE,
        name="kws-fw",
        version=version,
        security_version=0,
        sha256=digest(f"firmware {label}"),
        length=1024,
        media_type="application/octet-stream",
    )
    manifest = ReleaseManifest(
        name="kws", version=version, device_class=CLASS, created=NOW, components=(firmware,)
    )
    base = Release(
        digest=digest(label),
        name="kws",
        version=version,
        device_class=CLASS,
        envelope_json=sign_model(manifest, [_THROWAWAY_KEY]).to_bytes().decode(),
        created_at=NOW,
    )
    return replace(base, **changes)


def director_record(sequence: int, device_id: str = DEVICE, **changes: Any) -> DirectorRecord:
    base = DirectorRecord(
        device_id=device_id,
        sequence=sequence,
        release_digest=digest("kws-1.0"),
        action=Action.INSTALL,
        issued_at=NOW,
        expires_at=NOW + timedelta(days=7),
        envelope_json=f'{{"sequence": {sequence}}}',
        rollout_id="rollout-1",
        wave=0,
    )
    return replace(base, **changes)


def seed_device(uow: UnitOfWork, device_id: str = DEVICE) -> str:
    with uow:
        uow.device_classes.add(device_class())
        uow.devices.add(device(device_id))
        uow.releases.add(release())
        uow.commit()
    return device_id
