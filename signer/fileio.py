"""The signer's files: reading envelopes, writing outputs atomically, storing artifacts.

``InputError`` is the one error for a file or option the operator gave that cannot be
used; the CLI reports it and exits 2. Verification refusals are ``signer.errors.Refusal``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from schemas import Envelope
from schemas.errors import DocumentError, WrongPayloadType
from signer.artifacts import ArtifactVerifier

__all__ = [
    "InputError",
    "artifact_chunks",
    "ensure_absent",
    "is_encrypted_key",
    "read_bytes",
    "read_envelope",
    "store_artifact",
    "verify_artifact_file",
    "write_new",
    "write_replacing",
]

CHUNK = 64 * 1024


class InputError(ValueError):
    """A file or option given by the operator cannot be used."""


def read_bytes(path: Path, *, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from exc


def read_envelope(path: Path, *, what: str = "envelope") -> Envelope:
    """Strictly parse a DSSE envelope of any kind, each kind under its own size cap.

    Parse errors are re-raised as a plain ``DocumentError`` that names the file.
    """
    data = read_bytes(path, what=what)
    try:
        return _parse_envelope(data)
    except DocumentError as exc:
        raise DocumentError(f"{what} {path}: {exc}") from exc


def _parse_envelope(data: bytes) -> Envelope:
    try:
        # Root has the largest cap; any other kind is re-read under the default cap.
        return Envelope.from_bytes(data, kind="root")
    except WrongPayloadType:
        return Envelope.from_bytes(data)


def is_encrypted_key(path: Path) -> bool:
    """True for an encrypted PKCS#8 PEM; unreadable files are left to the key loader."""
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError:
        return False
    return head.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")


def _write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """Temp file in the same directory, then ``os.replace``: readers never see half a file."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def ensure_absent(path: Path) -> None:
    """Outputs are never overwritten, so a signed document is never silently lost."""
    if path.exists():
        raise InputError(f"{path} exists; refusing to overwrite it (remove it or choose another)")


def write_new(path: Path, data: bytes) -> None:
    ensure_absent(path)
    write_replacing(path, data)


def write_replacing(path: Path, data: bytes) -> None:
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: directory {path.parent} does not exist")
    try:
        _write_atomic(path, [data])
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from exc


def artifact_chunks(path: Path, verifier: ArtifactVerifier) -> Iterator[bytes]:
    """Read at most one byte past the declared length, so endless data is never read."""
    with path.open("rb") as handle:
        while chunk := handle.read(min(CHUNK, verifier.remaining + 1)):
            verifier.update(chunk)
            yield chunk
    verifier.finish()


def verify_artifact_file(path: Path, *, name: str, length: int, sha256: str) -> None:
    """Raise an ``ArtifactRefusal`` unless the file has exactly this length and digest."""
    verifier = ArtifactVerifier(name=name, length=length, sha256=sha256)
    try:
        for _ in artifact_chunks(path, verifier):
            pass
    except OSError as exc:
        raise InputError(f"cannot read artifact {path}: {exc.strerror}") from exc


def store_artifact(source: Path, directory: Path, *, length: int, sha256: str) -> Path:
    """Copy ``source`` to ``directory/<sha256>``, checking the bytes actually copied.

    The check while copying catches a file changed between hashing and copying.
    """
    target = directory / sha256
    verifier = ArtifactVerifier(name=str(source), length=length, sha256=sha256)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(target, artifact_chunks(source, verifier))
    except OSError as exc:
        raise InputError(f"cannot store artifact {source} in {directory}: {exc.strerror}") from exc
    return target
