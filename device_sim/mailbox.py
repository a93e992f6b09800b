"""The newest unhandled ``desired`` payload of one device, whatever the transport."""

from __future__ import annotations

import asyncio

__all__ = ["Mailbox"]


class Mailbox:
    """Holds the newest unhandled ``desired`` payload; a newer one replaces it."""

    def __init__(self) -> None:
        self._payload: bytes | None = None
        self._ready = asyncio.Event()

    def put(self, payload: bytes) -> None:
        self._payload = payload
        self._ready.set()

    async def get(self) -> bytes:
        while self._payload is None:
            self._ready.clear()
            await self._ready.wait()
        payload, self._payload = self._payload, None
        return payload
