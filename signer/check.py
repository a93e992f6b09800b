"""What ``fleet-sign verify`` decides, without IO: the device's rules, run by an operator.

From a pinned root, walk the newer roots one version at a time (``trust_next_root``), then
judge the document: a newer root, or a release under the newest root's release role. The
clock is a parameter; artifact bytes are checked by the caller (``signer.fileio``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from schemas import Envelope, ReleaseManifest, Role, RootMetadata, decode_payload
from schemas.errors import DocumentError
from signer.errors import MalformedDocument
from signer.rotation import check_root_fresh, trust_next_root
from signer.signing import decode_verified, verify_role

__all__ = ["VerifiedRelease", "VerifiedRoot", "trust_pinned_root", "verify_document"]


@dataclass(frozen=True)
class VerifiedRoot:
    root: RootMetadata
    signers: frozenset[str]
    previous_version: int


@dataclass(frozen=True)
class VerifiedRelease:
    release: ReleaseManifest
    signers: frozenset[str]
    root: RootMetadata


def trust_pinned_root(envelope: Envelope) -> RootMetadata:
    """The pinned root must carry a threshold of its own root keys, as TUF loads its root.

    This keeps a partially signed root (``--partial``) from being pinned by mistake.
    """
    try:
        root = decode_payload(envelope, RootMetadata)
    except DocumentError as exc:
        raise MalformedDocument(f"pinned root: {exc}") from exc
    verify_role(envelope, root, Role.ROOT)
    return root


def _walk(root: RootMetadata, chain: Sequence[Envelope]) -> RootMetadata:
    for envelope in chain:
        root = trust_next_root(root, envelope)
    return root


def verify_document(
    pinned: Envelope, chain: Sequence[Envelope], document: Envelope, now: datetime
) -> VerifiedRoot | VerifiedRelease:
    """Raise a ``Refusal`` unless ``document`` is trusted from ``pinned`` at ``now``."""
    root = _walk(trust_pinned_root(pinned), chain)
    if document.kind == "root":
        newer = trust_next_root(root, document)
        check_root_fresh(newer, now)
        signers = verify_role(document, newer, Role.ROOT)
        return VerifiedRoot(root=newer, signers=frozenset(signers), previous_version=root.version)
    if document.kind == "release":
        check_root_fresh(root, now)
        release = decode_verified(document, root, Role.RELEASE, ReleaseManifest)
        signers = verify_role(document, root, Role.RELEASE)
        return VerifiedRelease(release=release, signers=frozenset(signers), root=root)
    raise MalformedDocument(
        f"fleet-sign verifies root and release envelopes, not {document.payloadType!r}"
    )
