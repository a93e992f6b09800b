"""An in-memory fleet repository for attacking the real device acceptance rules.

Modelled on python-tuf's ``tests/repository_simulator.py``: the simulator holds real
Ed25519 keys per role, publishes signed root versions, signs release manifests and issues
per-device director manifests with an injected clock; tests then hand its deliveries,
honest or doctored, to a ``SimulatedDevice`` that runs ``accept_update``.

Example::

    sim = RepositorySimulator(KeyPool(), now=START)
    device = sim.provision("dev-1")
    device.receive(sim.deliver("dev-1"), sim.now)
    sim.rotate_root(release=["release-1", "release-2"])  # revokes release-3

Keys are named (``root-1``, ``release-3``, ``director-1``, ``attacker``…) and come from a
``KeyPool`` that generates each name once, so a test says which keys sign what.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import (
    Action,
    Component,
    ComponentKind,
    Delivery,
    DirectorManifest,
    Envelope,
    ReleaseManifest,
    Role,
    RoleKeys,
    RootMetadata,
    canonical_bytes,
    decode_payload,
)
from signer.acceptance import (
    AcceptedUpdate,
    DeviceTrustState,
    accept_update,
    commit_installed,
    payload_digest,
)
from signer.artifacts import ArtifactVerifier
from signer.constraints import DeviceCapabilities
from signer.keys import SigningKey
from signer.signing import sign_model
from tests.fleet.tflite_builder import build, tiny_classifier

__all__ = [
    "DEVICE_CLASS",
    "DIRECTOR_LIFETIME",
    "ROOT_LIFETIME",
    "START",
    "KeyPool",
    "RepositorySimulator",
    "SimulatedDevice",
    "tamper",
    "trust_snapshot",
]

START = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
DEVICE_CLASS = "nrf52840-kws"
ROOT_LIFETIME = timedelta(days=365)
DIRECTOR_LIFETIME = timedelta(hours=1)
MEDIA_TYPES = {
    ComponentKind.FIRMWARE: "application/octet-stream",
    ComponentKind.MODEL: "application/vnd.tflite",
    ComponentKind.THRESHOLDS: "application/json",
}


class KeyPool:
    """Ed25519 keys by name, each generated on first use and then reused."""

    def __init__(self) -> None:
        self._keys: dict[str, SigningKey] = {}

    def __call__(self, name: str) -> SigningKey:
        if name not in self._keys:
            self._keys[name] = SigningKey.generate()
        return self._keys[name]


class RepositorySimulator:
    """Root, release and director signing plus an artifact store, all in memory.

    Root v1 is 1-of-1 (``root_threshold=2`` makes it 2-of-2), release is 2-of-3 and the
    director is 1-of-1. ``now`` is the clock the director stamps manifests with.
    """

    def __init__(self, keys: KeyPool, *, now: datetime, root_threshold: int = 1) -> None:
        self.keys = keys
        self.now = now
        self.role_keys: dict[Role, list[str]] = {
            Role.ROOT: [f"root-{i}" for i in range(1, root_threshold + 1)],
            Role.RELEASE: ["release-1", "release-2", "release-3"],
            Role.DIRECTOR: ["director-1"],
        }
        self.thresholds = {Role.ROOT: root_threshold, Role.RELEASE: 2, Role.DIRECTOR: 1}
        self.roots: list[Envelope] = []
        self.artifacts: dict[str, bytes] = {}
        self._sequences: dict[str, int] = {}
        self._publish_root(self.role_keys[Role.ROOT])

    # -- root ---------------------------------------------------------------------------

    def root_metadata(self, *, version: int) -> RootMetadata:
        names = {name for role_names in self.role_keys.values() for name in role_names}
        return RootMetadata(
            version=version,
            expires=self.now + ROOT_LIFETIME,
            keys={self.keys(name).keyid: self.keys(name).public for name in sorted(names)},
            roles={
                role: RoleKeys(
                    keyids=tuple(self.keys(name).keyid for name in names_),
                    threshold=self.thresholds[role],
                )
                for role, names_ in self.role_keys.items()
            },
        )

    def rotate_root(
        self,
        *,
        root: Sequence[str] | None = None,
        release: Sequence[str] | None = None,
        director: Sequence[str] | None = None,
        thresholds: Mapping[Role, int] | None = None,
        sign_with: Sequence[str] | None = None,
    ) -> Envelope:
        """Publish the next root version with the given role keys.

        Signed by every old and new root key unless ``sign_with`` names the signers.
        Dropping a key from every role removes it from ``keys``: that is revocation.
        """
        old_root_keys = self.role_keys[Role.ROOT]
        for role, names in ((Role.ROOT, root), (Role.RELEASE, release), (Role.DIRECTOR, director)):
            if names is not None:
                self.role_keys[role] = list(names)
        self.thresholds.update(thresholds or {})
        if sign_with is None:
            sign_with = list(dict.fromkeys([*old_root_keys, *self.role_keys[Role.ROOT]]))
        return self._publish_root(sign_with)

    def _publish_root(self, sign_with: Sequence[str]) -> Envelope:
        metadata = self.root_metadata(version=len(self.roots) + 1)
        envelope = sign_model(metadata, self._keys(sign_with))
        self.roots.append(envelope)
        return envelope

    # -- releases and artifacts ---------------------------------------------------------

    def add_artifact(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.artifacts[digest] = data
        return digest

    def serve(self, digest: str, *, chunk_size: int = 64) -> Iterator[bytes]:
        data = self.artifacts[digest]
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    def release(
        self,
        version: str = "1.0.0",
        *,
        security_version: int = 1,
        per_kind: Mapping[ComponentKind, int] | None = None,
        device_class: str = DEVICE_CLASS,
    ) -> ReleaseManifest:
        """A release of all three components; ``per_kind`` overrides a security version."""
        components = []
        for kind in ComponentKind:
            data = _artifact_bytes(kind, version)
            components.append(
                Component(
                    kind=kind,
                    name=f"kws-{kind.value}",
                    version=version,
                    security_version=(per_kind or {}).get(kind, security_version),
                    sha256=self.add_artifact(data),
                    length=len(data),
                    media_type=MEDIA_TYPES[kind],
                )
            )
        return ReleaseManifest(
            name="kws",
            version=version,
            device_class=device_class,
            created=self.now,
            components=tuple(components),
        )

    def sign_release(
        self, manifest: ReleaseManifest, signers: Sequence[str] | None = None
    ) -> Envelope:
        """Signed by the first threshold of release keys unless ``signers`` says otherwise."""
        if signers is None:
            signers = self.role_keys[Role.RELEASE][: self.thresholds[Role.RELEASE]]
        return sign_model(manifest, self._keys(signers))

    # -- director -----------------------------------------------------------------------

    def director(
        self,
        device_id: str,
        release: Envelope,
        *,
        issued: datetime | None = None,
        action: Action = Action.INSTALL,
        signers: Sequence[str] | None = None,
    ) -> Envelope:
        """The next director manifest for ``device_id``, naming ``release`` by digest."""
        sequence = self._sequences[device_id] = self._sequences.get(device_id, 0) + 1
        issued = issued or self.now
        manifest = DirectorManifest(
            device_id=device_id,
            sequence=sequence,
            issued=issued,
            expires=issued + DIRECTOR_LIFETIME,
            release_digest=payload_digest(release),
            action=action,
        )
        return sign_model(manifest, self._keys(signers or self.role_keys[Role.DIRECTOR]))

    def deliver(
        self,
        device_id: str,
        release: Envelope | None = None,
        *,
        roots: Iterable[Envelope] | None = None,
        **director_options: Any,
    ) -> Delivery:
        """A delivery with every root after v1 (devices skip the ones they have)."""
        if release is None:
            release = self.sign_release(self.release())
        return Delivery(
            director=self.director(device_id, release, **director_options),
            release=release,
            roots=tuple(self.roots[1:] if roots is None else roots),
        )

    def provision(self, device_id: str, device_class: str = DEVICE_CLASS) -> SimulatedDevice:
        """A factory-fresh device with the current root pinned."""
        root = decode_payload(self.roots[-1], RootMetadata)
        return SimulatedDevice(
            DeviceTrustState(device_id=device_id, device_class=device_class, root=root)
        )

    def _keys(self, names: Iterable[str]) -> list[SigningKey]:
        return [self.keys(name) for name in names]


class SimulatedDevice:
    """A device's trust store: it runs the real rules and saves state only on acceptance."""

    def __init__(
        self, state: DeviceTrustState, capabilities: DeviceCapabilities | None = None
    ) -> None:
        self.state = state
        self.capabilities = capabilities

    def receive(self, delivery: Delivery, now: datetime) -> AcceptedUpdate:
        accepted = accept_update(self.state, delivery, now, device=self.capabilities)
        self.state = accepted.state
        return accepted

    def confirm(self, release: ReleaseManifest) -> None:
        """The new image booted and passed its health check: raise the floors."""
        self.state = commit_installed(self.state, release)

    def download(self, component: Component, chunks: Iterable[bytes]) -> bytes:
        verifier = ArtifactVerifier(
            name=component.name, length=component.length, sha256=component.sha256
        )
        received = []
        for chunk in chunks:
            verifier.update(chunk)
            received.append(chunk)
        verifier.finish()
        return b"".join(received)


def _artifact_bytes(kind: ComponentKind, version: str) -> bytes:
    """Distinct bytes per kind and version; the model is a real int8 ``.tflite``, since
    the server inspects it and checks it fits before registering a release."""
    if kind is ComponentKind.MODEL:
        return build(tiny_classifier(), description=f"kws-model {version}")
    return f"{kind.value} {version}\n".encode() * 16


def tamper(envelope: Envelope, edit: Callable[[dict[str, Any]], None]) -> Envelope:
    """The same signatures over an edited payload: what a man in the middle can send."""
    payload = json.loads(envelope.payload_bytes())
    edit(payload)
    encoded = base64.b64encode(canonical_bytes(payload)).decode("ascii")
    return envelope.model_copy(update={"payload": encoded})


def trust_snapshot(state: DeviceTrustState) -> tuple[object, ...]:
    """A plain-value copy of a trust state, to prove a refusal changed nothing."""
    return (
        state.device_id,
        state.device_class,
        state.root.model_dump(mode="json"),
        state.last_sequence,
        dict(state.floors),
    )
