"""OSCORE (RFC 8613) in front of the device resources: who may read ``/m/{id}`` and
post to ``/s/{id}`` and ``/t/{id}`` is the device whose keys protect the request.

- ``GatedSite`` sends a request that carries no OSCORE option to the public site
  (artifacts, which are signed, and ``/.well-known/core``); there ``/m``, ``/s`` and ``/t``
  answer 4.01 whatever the id, so an unprotected client learns nothing of which ids are
  enrolled. A protected request is decrypted with its device's context and reaches the
  protected site, whose resources check that the path names that device (4.03 if not).
- ``DeviceContexts`` finds a context by the request's kid. It asks the database (in
  the executor, never on the event loop) when it has not asked for ``ttl`` seconds, so
  new keys, revocation and decommissioning reach every replica within that time. A
  context whose keys did not change is kept, with its replay window and its lease.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiocoap import error, oscore, resource
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

from schemas.oscore import OscoreKeys
from schemas.oscore_context import LeasedSecurityContext, SequenceLeases, device_claim

__all__ = ["DeviceContexts", "GatedSite", "OscoreRequired", "require_device"]

_MAX_ENTRIES = 100_000

KeyLookup = Callable[[str], "tuple[str, OscoreKeys] | None"]
"""A kid (hex) → the device id and keys it names, or None; blocking."""


@dataclass
class _Entry:
    context: LeasedSecurityContext | None
    keys: OscoreKeys | None
    checked_at: float


class DeviceContexts(CredentialsMap):  # type: ignore[misc]
    """What ``OscoreSiteWrapper`` asks for a context: ``find_oscore``, by kid."""

    def __init__(
        self,
        lookup: KeyLookup,
        leases: Callable[[str], SequenceLeases],
        *,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._lookup = lookup
        self._leases = leases
        self._ttl = ttl
        self._clock = clock
        self._by_kid: dict[bytes, _Entry] = {}

    async def refresh(self, kid: bytes) -> None:
        if len(self._by_kid) > _MAX_ENTRIES:
            self.forget(self._clock() - self._ttl)
        entry = self._by_kid.get(kid)
        if entry is not None and self._clock() - entry.checked_at < self._ttl:
            return
        found = await asyncio.get_running_loop().run_in_executor(None, self._lookup, kid.hex())
        now = self._clock()
        if found is None:
            self._by_kid[kid] = _Entry(None, None, now)
            return
        device_id, keys = found
        if entry is not None and entry.keys == keys and entry.context is not None:
            entry.checked_at = now
            return
        context = LeasedSecurityContext(
            keys, role="server", leases=self._leases(device_id), device_id=device_id
        )
        self._by_kid[kid] = _Entry(context, keys, now)

    def find_oscore(self, unprotected: dict[int, Any]) -> LeasedSecurityContext:
        entry = self._by_kid.get(unprotected.get(oscore.COSE_KID, b""))
        if entry is None or entry.context is None or unprotected.get(oscore.COSE_KID_CONTEXT):
            raise KeyError("no such security context")  # the wrapper answers 4.01
        return entry.context

    def forget(self, older_than: float) -> None:
        """Drop entries not checked since ``older_than`` (a clock reading): unknown kids
        an attacker sprays must not grow the map without bound."""
        for kid in [k for k, e in self._by_kid.items() if e.checked_at < older_than]:
            del self._by_kid[kid]


class GatedSite(OscoreSiteWrapper):  # type: ignore[misc]
    """aiocoap's wrapper hands unprotected requests to the protected site; this one
    hands them to the public site instead."""

    def __init__(self, protected: Any, public: Any, contexts: DeviceContexts) -> None:
        super().__init__(protected, contexts)
        self._public = public
        self._contexts = contexts

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        if request.opt.oscore is None:
            await self._public.render_to_pipe(pipe)
            return
        try:
            kid = oscore.verify_start(request).get(oscore.COSE_KID)
        except (oscore.NotAProtectedMessage, oscore.DecodeError):
            kid = None  # the wrapper answers it
        if isinstance(kid, bytes):
            await self._contexts.refresh(kid)
        await super().render_to_pipe(pipe)

    async def needs_blockwise_assembly(self, request: Any) -> bool:
        return False

    def get_resources_as_linkheader(self) -> Any:
        return self._public.get_resources_as_linkheader()


class OscoreRequired(resource.Resource, resource.PathCapable):  # type: ignore[misc]
    """``/m``, ``/s`` and ``/t`` of the public site: 4.01 for any id and method."""

    async def needs_blockwise_assembly(self, request: Any) -> bool:
        return False

    async def render(self, request: Any) -> Any:
        raise error.Unauthorized("OSCORE required")


def require_device(request: Any, device_id: str) -> None:
    """4.03 unless the request was protected with ``device_id``'s own keys."""
    claims = getattr(request.remote, "authenticated_claims", ())
    if device_claim(device_id) not in claims:
        raise error.Forbidden("these keys are another device's")
