"""Device-side acceptance rules (docs/architecture.md §2): pure functions over immutable state.

``accept_update`` takes what a device has stored, what it received and the time, and
returns the update to install plus the state to persist, or raises a ``Refusal``. It
never mutates its input, so a refused update leaves the device exactly as it was; the
caller saves the returned state atomically only after acceptance.

Order of checks (each stage trusts only what earlier stages verified):
  1. walk new root versions one at a time; the newest must not have expired;
  2. director signature (director role) → manifest; device id; sequence; expiry;
  3. release signatures (release-role threshold) → manifest; the release digest named by
     the director; device class; each component's security version against the floors;
  4. the release's signed ``Constraints`` against what the device offers
     (``signer.constraints``), before a byte is downloaded.
Artifacts are checked while downloading with ``signer.artifacts.ArtifactVerifier``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType

from schemas import (
    Delivery,
    DirectorManifest,
    Envelope,
    ReleaseManifest,
    Role,
    RootMetadata,
    decode_payload,
)
from schemas.errors import DocumentError
from signer.constraints import DeviceCapabilities, check_constraints
from signer.errors import (
    DirectorExpired,
    ReleaseDigestMismatch,
    SecurityFloorViolation,
    SequenceReplayed,
    WrongDevice,
    WrongDeviceClass,
)
from signer.rotation import check_root_fresh, trust_next_root
from signer.signing import decode_verified

__all__ = [
    "AcceptedUpdate",
    "DeviceTrustState",
    "accept_update",
    "advance_root",
    "commit_installed",
    "payload_digest",
]


def _frozen(floors: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(floors))


@dataclass(frozen=True)
class DeviceTrustState:
    """What a device persists between updates; never mutated in place."""

    device_id: str
    device_class: str
    root: RootMetadata
    last_sequence: int = 0
    floors: Mapping[str, int] = field(default_factory=lambda: _frozen({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "floors", _frozen(self.floors))

    def floor(self, kind: str) -> int:
        return self.floors.get(kind, 0)


@dataclass(frozen=True)
class AcceptedUpdate:
    state: DeviceTrustState
    director: DirectorManifest
    release: ReleaseManifest
    release_digest: str


def payload_digest(envelope: Envelope) -> str:
    return hashlib.sha256(envelope.payload_bytes()).hexdigest()


def _walk_roots(root: RootMetadata, newer: tuple[Envelope, ...]) -> RootMetadata:
    for envelope in newer:
        candidate_version = _peek_version(envelope)
        if candidate_version is not None and candidate_version <= root.version:
            continue
        root = trust_next_root(root, envelope)
    return root


def _peek_version(envelope: Envelope) -> int | None:
    """Skip roots the device already has without trusting anything in them."""
    try:
        return decode_payload(envelope, RootMetadata).version
    except DocumentError:
        return None


def _check_director(state: DeviceTrustState, director: DirectorManifest, now: datetime) -> None:
    if director.device_id != state.device_id:
        raise WrongDevice(
            f"director manifest is for device {director.device_id!r}, this is {state.device_id!r}"
        )
    if director.sequence <= state.last_sequence:
        raise SequenceReplayed(
            f"sequence {director.sequence} is not above the last accepted {state.last_sequence}"
        )
    if director.expires <= now:
        raise DirectorExpired(
            f"director manifest expired at {director.expires.isoformat()}; now is {now.isoformat()}"
        )


def _check_release(state: DeviceTrustState, release: ReleaseManifest) -> None:
    if release.device_class != state.device_class:
        raise WrongDeviceClass(
            f"release is for device class {release.device_class!r}, "
            f"this device is {state.device_class!r}"
        )
    for component in release.components:
        floor = state.floor(component.kind.value)
        if component.security_version < floor:
            raise SecurityFloorViolation(
                f"{component.kind.value} {component.name} {component.version} has "
                f"security_version {component.security_version}, below the floor {floor}"
            )


def advance_root(state: DeviceTrustState, roots: tuple[Envelope, ...]) -> DeviceTrustState:
    """Trust each newer root that verifies, independently of the rest of a delivery.

    A device persists this first (as python-tuf saves each root once verified), so a
    valid rotation is kept even when the director manifest beside it is refused.
    """
    root = _walk_roots(state.root, roots)
    return state if root == state.root else replace(state, root=root)


def accept_update(
    state: DeviceTrustState,
    delivery: Delivery,
    now: datetime,
    device: DeviceCapabilities | None = None,
) -> AcceptedUpdate:
    """The update to install, or a ``Refusal``; ``device`` adds the constraint checks."""
    root = _walk_roots(state.root, delivery.roots)
    check_root_fresh(root, now)
    director = decode_verified(delivery.director, root, Role.DIRECTOR, DirectorManifest)
    _check_director(state, director, now)
    release = decode_verified(delivery.release, root, Role.RELEASE, ReleaseManifest)
    digest = payload_digest(delivery.release)
    if digest != director.release_digest:
        raise ReleaseDigestMismatch(
            f"director names release {director.release_digest[:16]}…, received {digest[:16]}…"
        )
    _check_release(state, release)
    if device is not None:
        check_constraints(release, device)
    new_state = replace(state, root=root, last_sequence=director.sequence)
    return AcceptedUpdate(
        state=new_state, director=director, release=release, release_digest=digest
    )


def commit_installed(state: DeviceTrustState, release: ReleaseManifest) -> DeviceTrustState:
    """Raise the floors once the release has booted and confirmed its health.

    Floors move only after confirmation so a device whose new image fails its health
    check can still return to the old slot.
    """
    floors = dict(state.floors)
    for component in release.components:
        kind = component.kind.value
        floors[kind] = max(floors.get(kind, 0), component.security_version)
    return replace(state, floors=floors)
