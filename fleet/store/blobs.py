"""A content-addressed blob store on a local directory.

A blob lives at ``<root>/ab/cd/<sha256>``, so identical content is stored once and a
name always means the same bytes. Uploads stream into ``<root>/incoming`` (the same
filesystem, so the final ``os.replace`` is atomic) and are fsynced before they are
renamed: a crash leaves at worst a stray temporary file, never a half blob under a
final name.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from fleet.store.errors import BlobNotFound, BlobTooLarge, RangeNotSatisfiable

__all__ = ["READ_CHUNK", "BlobStore"]

READ_CHUNK = 64 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._incoming = root / "incoming"

    def put_stream(self, chunks: Iterable[bytes], *, max_length: int) -> tuple[str, int]:
        """Store the streamed bytes; return their sha256 and length.

        Raises ``BlobTooLarge`` as soon as the stream passes ``max_length``, before
        the excess is written. If the stream raises, nothing is stored.
        """
        self._incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._incoming, prefix="upload-")
        temporary = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                sha256, length = _copy_hashing(chunks, out, max_length=max_length)
                out.flush()
                os.fsync(out.fileno())
            self._settle(temporary, sha256)
        finally:
            temporary.unlink(missing_ok=True)
        return sha256, length

    def exists(self, sha256: str) -> bool:
        return _SHA256.fullmatch(sha256) is not None and self._path(sha256).is_file()

    def length(self, sha256: str) -> int:
        return self._existing(sha256).stat().st_size

    def path_of(self, sha256: str) -> Path:
        """Where the blob lives, for servers that send files; ``BlobNotFound`` if absent."""
        return self._existing(sha256)

    def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Chunks of bytes ``[start, end)``, like a slice; ``end`` past the blob is cut.

        The range is checked now, so a bad one raises here rather than mid-response.
        """
        path = self._existing(sha256)
        size = path.stat().st_size
        stop = size if end is None else min(end, size)
        if start < 0 or start > size or stop < start:
            raise RangeNotSatisfiable(f"range [{start}, {end}) of a {size}-byte blob")
        return _read_chunks(path, start, stop)

    def delete(self, sha256: str) -> bool:
        """Remove a blob; False if there was none."""
        if not self.exists(sha256):
            return False
        self._path(sha256).unlink(missing_ok=True)
        return True

    def _settle(self, temporary: Path, sha256: str) -> None:
        final = self._path(sha256)
        if final.exists():
            return  # the same bytes are already stored under this name
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temporary, final)
        _fsync_directory(final.parent)

    def _path(self, sha256: str) -> Path:
        return self._root / sha256[:2] / sha256[2:4] / sha256

    def _existing(self, sha256: str) -> Path:
        # Checking the form first also keeps a crafted name from escaping the root.
        if not self.exists(sha256):
            raise BlobNotFound(f"no blob {sha256[:64]!r}")
        return self._path(sha256)


def _copy_hashing(chunks: Iterable[bytes], out: BinaryIO, *, max_length: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    length = 0
    for chunk in chunks:
        length += len(chunk)
        if length > max_length:
            raise BlobTooLarge(f"stream passed the {max_length}-byte limit")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest(), length


def _read_chunks(path: Path, start: int, stop: int) -> Iterator[bytes]:
    with path.open("rb") as blob:
        blob.seek(start)
        remaining = stop - start
        while remaining > 0:
            chunk = blob.read(min(READ_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; the file's bytes were synced before it.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
