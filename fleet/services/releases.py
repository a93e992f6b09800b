"""Registering offline-signed releases: the server verifies, it never signs one."""

from __future__ import annotations

from datetime import datetime

from fleet.domain.records import Release
from fleet.services.errors import ConflictError, NotFoundError, ReleaseRejected
from fleet.services.release_fit import check_fit
from fleet.store import BlobStore, UnitOfWork
from schemas import DocumentError, Envelope, ReleaseManifest, Role, RootMetadata
from signer.acceptance import payload_digest
from signer.errors import Refusal
from signer.signing import decode_verified

__all__ = ["parse_signed_release", "refuse_untrusted", "register_release", "untrusted_reason"]


def parse_signed_release(data: bytes, root: RootMetadata) -> tuple[Envelope, ReleaseManifest]:
    """Verify a release envelope as a device would: a threshold of release keys."""
    try:
        envelope = Envelope.from_bytes(data, kind="release")
        manifest = decode_verified(envelope, root, Role.RELEASE, ReleaseManifest)
    except DocumentError as exc:
        raise ReleaseRejected(str(exc), code=exc.code) from exc
    except Refusal as exc:
        raise ReleaseRejected(str(exc), code=exc.code) from exc
    return envelope, manifest


def untrusted_reason(release: Release, root: RootMetadata) -> str | None:
    """Why the current root no longer vouches for a stored release; None if it does.

    A release is verified when it is registered; a later root may revoke or rotate out
    the keys that signed it. Devices would refuse it (``untrusted_key``).
    """
    try:
        parse_signed_release(release.envelope_json.encode(), root)
    except ReleaseRejected as exc:
        return (
            f"release {release.name} {release.version} no longer verifies under root "
            f"v{root.version}: {exc}; sign a new version with the current release keys"
        )
    return None


def refuse_untrusted(release: Release, root: RootMetadata) -> None:
    """Refuse to send a stored release the current root no longer vouches for: sending
    it could only fail a rollout in the field, so 409 ``release_untrusted`` now."""
    reason = untrusted_reason(release, root)
    if reason is not None:
        raise ConflictError(reason, code="release_untrusted")


def _check_artifacts(uow: UnitOfWork, manifest: ReleaseManifest) -> None:
    for component in manifest.components:
        artifact = uow.artifacts.get(component.sha256)
        if artifact is None:
            raise ReleaseRejected(
                f"{component.kind.value} {component.name}: artifact {component.sha256} "
                "has not been uploaded",
                code="artifact_missing",
            )
        if artifact.length != component.length:
            raise ReleaseRejected(
                f"{component.kind.value} {component.name}: release declares "
                f"{component.length} bytes, the stored artifact has {artifact.length}",
                code="artifact_length_mismatch",
            )


def register_release(
    uow: UnitOfWork,
    blobs: BlobStore,
    data: bytes,
    *,
    root: RootMetadata,
    actor: str,
    now: datetime,
) -> tuple[Release, bool]:
    """Store a verified release whose model fits its firmware and device class.

    Registering the same bytes again is a no-op.
    """
    envelope, manifest = parse_signed_release(data, root)
    digest = payload_digest(envelope)
    with uow:
        existing = uow.releases.get(digest)
        if existing is not None:
            return existing, False
        device_class = uow.device_classes.get(manifest.device_class)
        if device_class is None:
            raise NotFoundError(f"device class {manifest.device_class!r} does not exist")
        _check_artifacts(uow, manifest)
        check_fit(uow, blobs, manifest, device_class, now=now)
        release = Release(
            digest=digest,
            name=manifest.name,
            version=manifest.version,
            device_class=manifest.device_class,
            envelope_json=envelope.to_bytes().decode(),
            created_at=now,
        )
        uow.releases.add(release)
        uow.audit.append(
            at=now,
            actor=actor,
            action="release.register",
            subject=f"release:{digest}",
            detail={"name": manifest.name, "version": manifest.version},
        )
        uow.commit()
    return release, True
