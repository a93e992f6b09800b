"""What a simulated device needs from the outside world, as small abstract interfaces.

Like python-tuf's ``FetcherInterface``: the device logic takes these in its constructor,
the fleet runner passes real transports, unit tests pass a function or two.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from device_sim.flash import ArtifactRef
from schemas import Envelope, StatusReport

__all__ = ["ArtifactFetcher", "Clock", "StatusSink"]

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware."""


class ArtifactFetcher(Protocol):
    async def fetch(self, artifact: ArtifactRef, dest: Path) -> None:
        """Save exactly the artifact's bytes at ``dest`` or raise.

        Raises ``signer.errors.ArtifactRefusal`` for bytes that are not the artifact and
        ``device_sim.errors.DownloadFailed`` when the bytes cannot be had in time.
        Partial bytes may be kept beside ``dest`` to resume a later attempt.
        """
        ...


class StatusSink(Protocol):
    async def send_status(self, report: StatusReport, envelope: Envelope) -> None:
        """Deliver the signed report (``envelope``); ``report`` is its decoded content."""
        ...
