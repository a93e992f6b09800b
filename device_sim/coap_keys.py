"""A simulated device's OSCORE side: its keys in the client context, and its sender
sequence numbers leased from a file in its state directory.

A device that reused a sequence number after a power cut would be refused as a replay
(or worse, reuse a nonce), so the file is written, and fsynced, before a lease's numbers
are used: after a crash the rest of the lease is skipped (RFC 8613 Appendix B.1.1).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from aiocoap import Context

from schemas.oscore import OscoreKeys
from schemas.oscore_context import LeasedSecurityContext

__all__ = ["FileLeases", "client_context"]

SEQUENCE_FILE = "oscore-sequence.json"


class FileLeases:
    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self._path = path
        self._fsync = fsync

    def reserve(self, count: int) -> range:
        start = json.loads(self._path.read_text())["next"] if self._path.exists() else 0
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._path.parent, prefix=self._path.name + ".")
        with os.fdopen(fd, "w") as handle:
            json.dump({"next": start + count}, handle)
            handle.flush()
            if self._fsync:
                os.fsync(handle.fileno())
        os.replace(name, self._path)
        return range(start, start + count)


async def client_context(
    base_uri: str | None = None,
    keys: OscoreKeys | None = None,
    *,
    device_id: str = "",
    state_dir: Path | None = None,
    fsync: bool = True,
) -> Any:
    """One device's CoAP client; with ``keys``, every request to ``base_uri`` is OSCORE."""
    context = await Context.create_client_context(transports=["oscore", "udp6"])
    if keys is not None and base_uri is not None and state_dir is not None:
        leases = FileLeases(state_dir / SEQUENCE_FILE, fsync=fsync)
        security = LeasedSecurityContext(keys, role="device", leases=leases, device_id=device_id)
        context.client_credentials[f"{base_uri.rstrip('/')}/*"] = security
    return context
