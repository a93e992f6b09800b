"""What every artifact fetcher shares: an overall deadline, retries with backoff, and
resumption from the bytes already on disk (``.part``), whatever the transport."""

from __future__ import annotations

import asyncio
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from device_sim.errors import DownloadFailed, DownloadTimeout
from device_sim.flash import ArtifactRef
from signer.errors import ArtifactRefusal

__all__ = ["FetchPolicy", "ResumableFetcher", "TransientFetchError"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchPolicy:
    deadline: float = 60.0
    """Seconds for the whole download of one artifact, retries included."""
    attempts: int = 6
    backoff: float = 0.1
    """Seconds before the second attempt; doubles after each failure."""
    max_backoff: float = 5.0


class TransientFetchError(Exception):
    """An attempt failed in a way another attempt may not; never leaves a fetcher."""


class ResumableFetcher(ABC):
    """An ``ArtifactFetcher``; subclasses make one attempt over their transport."""

    def __init__(
        self,
        *,
        policy: FetchPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._policy = policy or FetchPolicy()
        self._sleep = sleep
        self.resumed = 0
        """How many attempts continued a partial download (for tests, logs)."""

    async def fetch(self, artifact: ArtifactRef, dest: Path) -> None:
        part = dest.with_name(dest.name + ".part")
        try:
            async with asyncio.timeout(self._policy.deadline):
                await self._with_retries(artifact, part)
        except TimeoutError as exc:
            raise DownloadTimeout(
                f"{artifact.name}: not complete within {self._policy.deadline:g} s"
            ) from exc
        except ArtifactRefusal:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)

    async def _with_retries(self, artifact: ArtifactRef, part: Path) -> None:
        delay = self._policy.backoff
        for attempt in range(1, self._policy.attempts + 1):
            try:
                await self._attempt(artifact, part)
                return
            except TransientFetchError as exc:
                if attempt == self._policy.attempts:
                    raise DownloadFailed(f"{exc} (after {attempt} attempts)") from exc
                log.info("%s; retrying in %.2f s", exc, delay)
            await self._sleep(delay)
            delay = min(delay * 2, self._policy.max_backoff)

    @abstractmethod
    async def _attempt(self, artifact: ArtifactRef, part: Path) -> None:
        """One try: continue ``part`` from where it stops; raise TransientFetchError to
        be tried again."""
