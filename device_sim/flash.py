"""A simulated device's flash: the download area and the two A/B slots, as directories.

::

    {root}/downloads/{sha256}        a complete, verified download
    {root}/downloads/{sha256}.part   bytes received so far (resumed with Range)
    {root}/slots/{a|b}/{name}        an installed image, one file per artifact
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from device_sim.state import SlotName
from signer.artifacts import ArtifactVerifier

__all__ = ["CHUNK", "ArtifactRef", "Flash", "verify_file"]

CHUNK = 16 * 1024


@dataclass(frozen=True)
class ArtifactRef:
    """One blob an update needs: a release component or the device's calibration."""

    name: str
    sha256: str
    length: int


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def verify_file(path: Path, artifact: ArtifactRef) -> None:
    """Raise the artifact refusal unless ``path`` holds exactly the declared bytes."""
    verifier = ArtifactVerifier(name=artifact.name, length=artifact.length, sha256=artifact.sha256)
    for chunk in _chunks(path):
        verifier.update(chunk)
    verifier.finish()


class Flash:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.downloads = root / "downloads"
        self.downloads.mkdir(parents=True, exist_ok=True)

    def download_path(self, artifact: ArtifactRef) -> Path:
        return self.downloads / artifact.sha256

    def has_download(self, artifact: ArtifactRef) -> bool:
        return self.download_path(artifact).is_file()

    def discard_download(self, artifact: ArtifactRef) -> None:
        self.download_path(artifact).unlink(missing_ok=True)

    def clear_downloads(self) -> None:
        for path in self.downloads.iterdir():
            path.unlink(missing_ok=True)

    def flip_byte(self, artifact: ArtifactRef, rng: random.Random) -> None:
        """Corrupt one byte of a saved download (the ``corrupt_download`` fault)."""
        path = self.download_path(artifact)
        size = path.stat().st_size
        if size == 0:
            path.write_bytes(b"\x00")
            return
        offset = rng.randrange(size)
        with path.open("r+b") as handle:
            handle.seek(offset)
            original = handle.read(1)
            handle.seek(offset)
            handle.write(bytes([original[0] ^ 0xFF]))

    def slot_dir(self, slot: SlotName) -> Path:
        return self.root / "slots" / slot

    def erase_slot(self, slot: SlotName) -> None:
        shutil.rmtree(self.slot_dir(slot), ignore_errors=True)
        self.slot_dir(slot).mkdir(parents=True)

    def write_to_slot(
        self, slot: SlotName, artifact: ArtifactRef, *, limit: int | None = None
    ) -> None:
        """Copy a verified download into ``slot``; ``limit`` stops early (a power cut)."""
        target = self.slot_dir(slot) / artifact.name
        written = 0
        with target.open("wb") as out:
            for chunk in _chunks(self.download_path(artifact)):
                if limit is not None and written + len(chunk) > limit:
                    out.write(chunk[: limit - written])
                    return
                out.write(chunk)
                written += len(chunk)

    def slot_file(self, slot: SlotName, artifact: ArtifactRef) -> Path:
        return self.slot_dir(slot) / artifact.name
