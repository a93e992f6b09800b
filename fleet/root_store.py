"""The server's trusted root chain: every root version, kept as files in the data dir.

The server verifies uploaded releases against the newest root and ships the newer
versions to devices in each delivery, so a device pinned to any older root can walk
the chain. A new version is admitted only if it verifies against the previous one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from schemas import DocumentError, Envelope, Role, RootMetadata, decode_payload
from signer.errors import Refusal
from signer.rotation import trust_next_root
from signer.signing import verify_role

__all__ = ["RootStore", "RootStoreError"]


class RootStoreError(ValueError):
    code = "root_refused"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(name, path)


class RootStore:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._chain: list[tuple[Envelope, RootMetadata]] = []
        for path in sorted(directory.glob("*.root.json"), key=lambda p: int(p.name.split(".")[0])):
            self._admit(Envelope.from_bytes(path.read_bytes(), kind="root"))

    @property
    def empty(self) -> bool:
        return not self._chain

    def trusted(self) -> RootMetadata:
        if not self._chain:
            raise RootStoreError("no root is pinned; start the server with FLEET_ROOT_PATH")
        return self._chain[-1][1]

    def newest(self) -> Envelope:
        """The newest trusted root's envelope: what a new device pins."""
        if not self._chain:
            raise RootStoreError("no root is pinned; start the server with FLEET_ROOT_PATH")
        return self._chain[-1][0]

    def newer_than_first(self) -> list[Envelope]:
        """Root versions 2..n, oldest first: what a delivery carries for devices."""
        return [envelope for envelope, _ in self._chain[1:]]

    def add(self, data: bytes) -> RootMetadata:
        """Admit a root envelope (the first must verify against itself) and save it.

        Adding a version already held, with the same bytes, is a no-op.
        """
        try:
            envelope = Envelope.from_bytes(data, kind="root")
            candidate = decode_payload(envelope, RootMetadata)
        except DocumentError as exc:
            raise RootStoreError(f"not a root envelope: {exc}") from exc
        if self._chain and candidate.version <= self.trusted().version:
            self._check_held(candidate.version, envelope)
            return candidate
        root = self._admit(envelope)
        self._directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(self._directory / f"{root.version}.root.json", envelope.to_bytes())
        return root

    def _check_held(self, version: int, envelope: Envelope) -> None:
        """An older or equal version is taken only as the very bytes already held."""
        oldest = self._chain[0][1].version
        if version < oldest:
            # The chain was started from a later root (its files lost or never copied):
            # the versions below cannot be linked in without the ones in between.
            raise RootStoreError(
                f"root v{version} is older than the oldest root this server holds "
                f"(v{oldest}, in {self._directory}); devices pinned below v{oldest} cannot "
                f"reach v{self.trusted().version}: stop the server, put every archived "
                f"version v1..v{self.trusted().version} there as N.root.json and start "
                "again (docs/operations.md, 3.6)"
            )
        held = self._chain[version - oldest][0]
        if held.payload != envelope.payload:
            raise RootStoreError(
                f"root v{version} differs from the v{version} this server holds "
                f"(in {self._directory}); a version is signed once, so a new root must "
                f"be v{self.trusted().version + 1}, signed by v{self.trusted().version}'s "
                "root keys"
            )

    def _admit(self, envelope: Envelope) -> RootMetadata:
        try:
            if self._chain:
                root = trust_next_root(self.trusted(), envelope)
            else:
                root = decode_payload(envelope, RootMetadata)
                verify_role(envelope, root, Role.ROOT)
        except DocumentError as exc:
            raise RootStoreError(f"malformed root: {exc}") from exc
        except Refusal as exc:
            raise RootStoreError(f"root refused ({exc.code}): {exc}") from exc
        self._chain.append((envelope, root))
        return root
