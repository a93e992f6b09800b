"""Root rotation: trusting root N+1 from root N (TUF's rule, one version at a time)."""

from __future__ import annotations

from datetime import datetime

from schemas import Envelope, Role, RootMetadata, decode_payload
from schemas.errors import DocumentError
from signer.errors import (
    MalformedDocument,
    RootExpired,
    RootRotationRefused,
    RootVersionError,
    SignatureRefusal,
)
from signer.signing import verify_role

__all__ = ["check_root_fresh", "trust_next_root"]


def trust_next_root(trusted: RootMetadata, envelope: Envelope) -> RootMetadata:
    """Return the next root if a threshold of the old root keys **and** of its own signed it.

    Expiry is not checked here: intermediate roots may have expired while a device was
    offline; only the newest root's expiry matters (``check_root_fresh``).
    """
    try:
        candidate = decode_payload(envelope, RootMetadata)
    except DocumentError as exc:
        raise MalformedDocument(str(exc)) from exc
    try:
        verify_role(envelope, trusted, Role.ROOT)
    except SignatureRefusal as exc:
        raise RootRotationRefused(
            f"root v{candidate.version} lacks a threshold of root v{trusted.version}'s "
            f"root keys: {exc}"
        ) from exc
    try:
        verify_role(envelope, candidate, Role.ROOT)
    except SignatureRefusal as exc:
        raise RootRotationRefused(
            f"root v{candidate.version} lacks a threshold of its own root keys: {exc}"
        ) from exc
    if candidate.version != trusted.version + 1:
        raise RootVersionError(
            f"expected root version {trusted.version + 1}, got {candidate.version}"
        )
    return candidate


def check_root_fresh(root: RootMetadata, now: datetime) -> None:
    if root.expires <= now:
        raise RootExpired(f"root v{root.version} expired at {root.expires.isoformat()}")
