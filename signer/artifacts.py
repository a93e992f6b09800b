"""Streaming artifact checks: stop at the declared length, then compare the digest."""

from __future__ import annotations

import hashlib

from signer.errors import ArtifactDigestMismatch, ArtifactTooLong, ArtifactTooShort

__all__ = ["ArtifactVerifier", "verify_artifact"]


class ArtifactVerifier:
    """Feed chunks as they arrive; refuses the first byte past the declared length.

    The endless-data defence: a device never buffers or hashes more than it was promised.
    """

    def __init__(self, *, name: str, length: int, sha256: str) -> None:
        self.name = name
        self.length = length
        self.sha256 = sha256
        self.received = 0
        self._hash = hashlib.sha256()

    @property
    def remaining(self) -> int:
        return self.length - self.received

    def update(self, chunk: bytes) -> None:
        if len(chunk) > self.remaining:
            raise ArtifactTooLong(
                f"{self.name}: declared {self.length} bytes, "
                f"got at least {self.received + len(chunk)}"
            )
        self.received += len(chunk)
        self._hash.update(chunk)

    def finish(self) -> None:
        if self.received < self.length:
            raise ArtifactTooShort(
                f"{self.name}: declared {self.length} bytes, got {self.received}"
            )
        digest = self._hash.hexdigest()
        if digest != self.sha256:
            raise ArtifactDigestMismatch(
                f"{self.name}: expected sha256 {self.sha256}, got {digest}"
            )


def verify_artifact(*, name: str, length: int, sha256: str, data: bytes) -> None:
    verifier = ArtifactVerifier(name=name, length=length, sha256=sha256)
    verifier.update(data)
    verifier.finish()
