"""The director: per-device manifests signed online (docs/architecture.md §2).

Building and signing are pure; the caller allocates the sequence inside its transaction
and stores the envelope in the outbox before anything is published.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas import Action, Calibration, Delivery, DirectorManifest, Envelope
from signer.keys import SigningKey
from signer.signing import sign_model

__all__ = ["Director", "DirectorDecision"]


@dataclass(frozen=True)
class DirectorDecision:
    device_id: str
    release_digest: str
    action: Action = Action.INSTALL
    calibration: Calibration | None = None
    rollout_id: str | None = None
    wave: int | None = None


@dataclass(frozen=True)
class Director:
    key: SigningKey
    ttl: timedelta

    def sign(self, decision: DirectorDecision, *, sequence: int, now: datetime) -> Envelope:
        manifest = DirectorManifest(
            device_id=decision.device_id,
            sequence=sequence,
            issued=now,
            expires=now + self.ttl,
            release_digest=decision.release_digest,
            calibration=decision.calibration,
            rollout_id=decision.rollout_id,
            wave=decision.wave,
            action=decision.action,
        )
        return sign_model(manifest, [self.key])


def delivery_bytes(director: Envelope, release: Envelope, roots: tuple[Envelope, ...]) -> bytes:
    """The retained ``tf/d/{id}/desired`` payload (and CoAP ``/m/{id}`` body)."""
    return Delivery(director=director, release=release, roots=roots).model_dump_json().encode()
