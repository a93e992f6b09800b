"""The OSCORE security context both ends run (aiocoap), built from ``OscoreKeys``.

aiocoap's own pairwise context keeps its state in files; the server keeps it in its
database and a simulated device in its state directory, so this one takes its sender
sequence numbers from a ``SequenceLeases`` the caller supplies. Needs aiocoap and its
OSCORE dependencies (the ``server`` extra); the base install never imports it.

- **Sender sequence numbers** (RFC 8613 Appendix B.1.1): taken from a leased range;
  storage is written once per lease, and after a crash the rest of a lease is skipped,
  never reused. Replicas sharing a device's keys lease disjoint ranges from one table,
  so no two of them build the same nonce.
- **Responses never reuse the request's nonce** (on the server): with several
  replicas, each keeps its own replay window, so a replayed request could be answered
  by two of them; a response under a fresh, leased sequence number stays safe then.
- **Replay window** (Appendix B.1.2): a server context starts without one and the first
  request is answered with a protected 4.01 and an Echo option, which aiocoap's client
  answers by itself; the window starts from that fresh request. No replica has to know
  what another saw.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal, Protocol

from aiocoap import oscore

from schemas.oscore import OscoreKeys

__all__ = ["LeasedSecurityContext", "SequenceLeases", "device_claim"]

LEASE = 1024
"""Sequence numbers reserved at a time: one storage write per this many messages."""


class SequenceLeases(Protocol):
    def reserve(self, count: int) -> range:
        """Atomically hand out the next ``count`` sender sequence numbers."""
        ...


def device_claim(device_id: str) -> str:
    """The claim a server context carries; ``request.remote.authenticated_claims``."""
    return f"device:{device_id}"


class LeasedSecurityContext(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):  # type: ignore[misc]
    def __init__(
        self,
        keys: OscoreKeys,
        *,
        role: Literal["server", "device"],
        leases: SequenceLeases,
        device_id: str,
        lease: int = LEASE,
    ) -> None:
        self.alg_aead = oscore.algorithms[oscore.DEFAULT_ALGORITHM]
        self.hashfun = oscore.hashfunctions[oscore.DEFAULT_HASHFUNCTION]
        device_kid, server_id = bytes.fromhex(keys.device_kid), bytes.fromhex(keys.server_id)
        if device_kid == server_id:
            raise ValueError("the device's and the server's sender ids must differ")
        self.role = role
        self.sender_id, self.recipient_id = (
            (server_id, device_kid) if role == "server" else (device_kid, server_id)
        )
        self.id_context = None
        self.derive_keys(bytes.fromhex(keys.master_salt), bytes.fromhex(keys.master_secret))
        self.authenticated_claims = [device_claim(device_id)] if role == "server" else []
        self.recipient_replay_window = oscore.ReplayWindow(oscore.DEFAULT_WINDOWSIZE, _nothing)
        if role == "server":
            self.echo_recovery: bytes | None = secrets.token_bytes(8)
        else:
            # A client checks no window (responses answer its own requests).
            self.echo_recovery = None
            self.recipient_replay_window.initialize_empty()
        self._leases = leases
        self._lease_size = lease
        self._leased = range(0)
        self._next = 0

    def new_sequence_number(self) -> int:
        if self._next >= self._leased.stop:
            # Synchronous because aiocoap's protect() is: once per lease, a short write.
            self._leased = self._leases.reserve(self._lease_size)
            self._next = self._leased.start
            if self._leased.stop - 1 > oscore.MAX_SEQNO:
                raise oscore.ContextUnavailable("sequence numbers exhausted; issue new keys")
        number, self._next = self._next, self._next + 1
        self.sender_sequence_number = self._next
        return number

    def post_seqnoincrease(self) -> None:
        """aiocoap's persistence hook; the lease already was the persistence."""

    def unprotect(self, protected_message: Any, request_id: Any = None) -> Any:
        message, identifiers = super().unprotect(protected_message, request_id)
        if self.role == "server" and request_id is None:
            identifiers.can_reuse_nonce = False
        return message, identifiers

    def __repr__(self) -> str:
        return f"<LeasedSecurityContext {self.role} kid={self.recipient_id.hex() or '-'}>"


def _nothing() -> None:
    """The replay window's change callback: a window is never persisted (see above)."""
