"""One simulated device process that speaks CoAP instead of MQTT and HTTP.

The same ``Device`` logic as ``device_sim.fleet.DeviceAgent``; only the ports differ:
``CoapDeviceLink`` (observe ``/m/{id}``, status to ``/s/{id}``) and
``CoapArtifactFetcher`` (Block2 from ``/a/{sha}``), over one aiocoap client context.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from device_sim.coap_keys import client_context
from device_sim.coap_link import CoapArtifactFetcher, CoapDeviceLink, CoapTuning
from device_sim.device import FACTORY_CAPABILITIES, Device
from device_sim.errors import PowerLoss
from device_sim.faults import Faults
from device_sim.flash import Flash
from device_sim.http_fetch import FetchPolicy
from device_sim.mailbox import Mailbox
from device_sim.ports import Clock
from device_sim.state import StateStore
from schemas import Envelope, StatusReport
from schemas.oscore import OscoreKeys
from signer.constraints import DeviceCapabilities
from signer.keys import SigningKey

__all__ = ["CoapChannel", "CoapDeviceAgent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoapChannel:
    """Where and how CoAP devices talk: the server (or a lossy relay) and the timing."""

    base_uri: str
    ack_timeout: float = 0.5
    reregister_after: float | None = None
    """Seconds between observe registrations; None: the response's Max-Age."""


class _ObservedSink:
    def __init__(self, link: CoapDeviceLink, observer: Callable[[StatusReport], None] | None):
        self._link = link
        self._observer = observer

    async def send_status(self, report: StatusReport, envelope: Envelope) -> None:
        await self._link.send_status(report, envelope)
        if self._observer is not None:
            self._observer(report)


@dataclass
class CoapDeviceAgent:
    """``run`` returns only by cancellation or power loss, as ``DeviceAgent.run``."""

    key: SigningKey
    directory: Path
    device_id: str
    channel: CoapChannel
    clock: Clock
    rng: random.Random
    faults: Faults = field(default_factory=Faults)
    fsync: bool = True
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)
    observer: Callable[[StatusReport], None] | None = None
    capabilities: DeviceCapabilities = FACTORY_CAPABILITIES
    coap_keys: OscoreKeys | None = None
    """Its OSCORE keys; without them the server answers its requests 4.01."""
    fetcher: CoapArtifactFetcher | None = field(default=None, init=False)

    async def run(self) -> None:
        mailbox = Mailbox()
        tuning = CoapTuning(self.channel.ack_timeout)
        context = await client_context(
            self.channel.base_uri,
            self.coap_keys,
            device_id=self.device_id,
            state_dir=self.directory,
            fsync=self.fsync,
        )
        link = CoapDeviceLink(
            context,
            self.channel.base_uri,
            device_id=self.device_id,
            on_desired=mailbox.put,
            rng=self.rng,
            tuning=tuning,
            reregister_after=self.channel.reregister_after,
        )
        self.fetcher = CoapArtifactFetcher(
            context, self.channel.base_uri, policy=self.fetch_policy, tuning=tuning
        )
        device = Device(
            key=self.key,
            store=StateStore(self.directory / "state.json", fsync=self.fsync),
            flash=Flash(self.directory),
            fetcher=self.fetcher,
            sink=_ObservedSink(link, self.observer),
            clock=self.clock,
            rng=self.rng,
            faults=self.faults,
            capabilities=self.capabilities,
        )
        link.start()
        try:
            await device.start()
            while True:
                await device.on_desired(await mailbox.get())
        except PowerLoss:
            log.info("%s: power lost", self.device_id)
            raise
        finally:
            await link.close()
            await context.shutdown()
