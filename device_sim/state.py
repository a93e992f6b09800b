"""A simulated device's persistent state: one JSON file, replaced atomically.

The file holds everything a device must remember across a power cut: the pinned root
(as the envelope it verified), the rest of ``signer.acceptance.DeviceTrustState``
(last accepted sequence, security floors), the two A/B slots, which slot boots, whether
that slot is on trial (booted, health not yet confirmed), the update in progress and the
status counter. It is saved with a temp file in the same directory, fsync, ``os.replace``
and an fsync of the directory, so a crash between two writes leaves either the old or
the new file, never half of one.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import (
    ComponentVersion,
    DeviceState,
    Envelope,
    ReleaseManifest,
    Role,
    RootMetadata,
    decode_payload,
)
from schemas.common import DeviceId, Digest, Name
from signer.acceptance import DeviceTrustState
from signer.signing import decode_verified

__all__ = [
    "LastStatus",
    "PendingUpdate",
    "PersistentState",
    "Slot",
    "SlotName",
    "StateCorrupt",
    "StateStore",
    "other_slot",
    "provision",
    "verify_pinned_root",
]

log = logging.getLogger(__name__)

SlotName = Literal["a", "b"]
STATE_CAP = 1024 * 1024


def other_slot(slot: SlotName) -> SlotName:
    return "b" if slot == "a" else "a"


class _Stored(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Slot(_Stored):
    """What one A/B slot holds; the files themselves live in ``device_sim.flash``."""

    release_digest: Digest
    release: Envelope
    components: tuple[ComponentVersion, ...]
    calibration_digest: Digest | None = None

    def manifest(self) -> ReleaseManifest:
        return decode_payload(self.release, ReleaseManifest)


class PendingUpdate(_Stored):
    """An accepted update not yet confirmed or given up; a restart resumes it."""

    director: Envelope
    release: Envelope
    release_digest: Digest
    sequence: int = Field(ge=1)


class LastStatus(_Stored):
    """The last lifecycle state, reported again after every restart."""

    state: DeviceState = DeviceState.IDLE
    release_digest: Digest | None = None
    error_code: str | None = None


class PersistentState(_Stored):
    format: Literal[1] = 1
    device_id: DeviceId
    device_class: Name
    root: Envelope = Field(description="the newest root this device verified")
    last_sequence: int = Field(default=0, ge=0)
    last_director_digest: Digest | None = None
    floors: dict[str, int] = Field(default_factory=dict)
    slots: dict[SlotName, Slot] = Field(default_factory=dict)
    active_slot: SlotName = "a"
    trial: bool = False
    pending: PendingUpdate | None = None
    counter: int = Field(default=0, ge=0)
    last_status: LastStatus = LastStatus()

    @property
    def inactive_slot(self) -> SlotName:
        return other_slot(self.active_slot)

    @property
    def running(self) -> Slot | None:
        return self.slots.get(self.active_slot)

    @property
    def running_digest(self) -> str | None:
        return self.running.release_digest if self.running else None

    def trust(self) -> DeviceTrustState:
        """The acceptance rules' view; the stored root was verified before it was saved."""
        return DeviceTrustState(
            device_id=self.device_id,
            device_class=self.device_class,
            root=decode_payload(self.root, RootMetadata),
            last_sequence=self.last_sequence,
            floors=self.floors,
        )


class StateCorrupt(Exception):
    """The state file exists but cannot be read back; never expected after a crash."""


class StateStore:
    """Load and atomically save one device's ``PersistentState``.

    ``fsync=False`` keeps ``os.replace``'s atomicity against a process crash (the only
    crash the simulator produces) but not against an OS crash; large simulated fleets use
    it because an fsync costs milliseconds per status report.
    """

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> PersistentState:
        self._remove_stale_temps()
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise StateCorrupt(f"cannot read {self.path}: {exc.strerror}") from exc
        if len(data) > STATE_CAP:
            raise StateCorrupt(f"{self.path} is {len(data)} bytes; the cap is {STATE_CAP}")
        try:
            return PersistentState.model_validate_json(data, strict=True)
        except ValidationError as exc:
            raise StateCorrupt(f"{self.path}: {exc.errors()[0]['msg']}") from exc

    def save(self, state: PersistentState) -> None:
        data = state.model_dump_json(indent=1).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=self._temp_prefix, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        if self.fsync:
            self._fsync_directory()

    @property
    def _temp_prefix(self) -> str:
        return f".{self.path.name}."

    def _remove_stale_temps(self) -> None:
        """A crash between mkstemp and os.replace leaves a temp file; it is never read."""
        for stale in self.path.parent.glob(f"{self._temp_prefix}*.tmp"):
            log.info("removing %s left by an interrupted save", stale)
            stale.unlink(missing_ok=True)

    def _fsync_directory(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def verify_pinned_root(root: Envelope) -> RootMetadata:
    """A root to pin must carry a threshold of its own root keys, or raise the Refusal."""
    return decode_verified(root, decode_payload(root, RootMetadata), Role.ROOT, RootMetadata)


def provision(
    store: StateStore,
    *,
    device_id: str,
    device_class: str,
    root: Envelope,
    factory: Slot | None = None,
) -> PersistentState:
    """Write a factory-fresh state: ``root`` pinned, ``factory`` (if any) in slot a.

    The pinned root must carry a threshold of its own root keys; anything else raises
    the ``signer.errors.Refusal`` that says why.
    """
    trusted = verify_pinned_root(root)
    state = PersistentState(
        device_id=device_id,
        device_class=device_class,
        root=root,
        slots={"a": factory} if factory else {},
    )
    log.debug("provisioned %s with root v%d", device_id, trusted.version)
    store.save(state)
    return state
