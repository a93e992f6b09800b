"""Running simulated devices: one ``DeviceAgent`` per device, a ``Fleet`` of them.

An agent is one device "process": its ``Device`` logic, its MQTT link and its HTTP
fetcher, handling ``desired`` messages one at a time (the newest wins). A simulated power
cut ends the agent; the fleet restarts it from its state file after ``restart_delay``,
as a device reboots. Every agent shares one event loop and one ``MqttHub``; each has its
own ``httpx.AsyncClient`` with one connection, as a device has (one shared client would
queue a whole fleet's downloads in httpcore's pool, whose cost grows with the square of
the queue: hundreds of devices then miss their download deadlines). A device whose spec
says ``transport="coap"`` runs as a ``CoapDeviceAgent`` instead (device_sim.coap_agent).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from device_sim.coap_agent import CoapChannel, CoapDeviceAgent
from device_sim.device import FACTORY_CAPABILITIES, Device
from device_sim.errors import PowerLoss
from device_sim.faults import Faults, LinkFault
from device_sim.flash import Flash
from device_sim.http_fetch import FetchPolicy, HttpArtifactFetcher
from device_sim.lossy_udp import LossStats, LossyUdpRelay
from device_sim.mailbox import Mailbox
from device_sim.mqtt_link import DeviceLink, LinkError, MqttHub
from device_sim.ports import Clock
from device_sim.state import StateStore, provision, verify_pinned_root
from device_sim.wire import status_topic
from schemas import DeviceState, Envelope, StatusReport
from schemas.common import DeviceId, Name
from schemas.oscore import OscoreKeys
from signer.constraints import DeviceCapabilities
from signer.keys import SigningKey, load_signing_key

__all__ = [
    "BROKER_LOGINS",
    "BROKER_LOGINS_FILE",
    "COAP_KEYS",
    "COAP_KEYS_FILE",
    "ENROLLMENT",
    "BrokerLoginEntry",
    "DeviceAgent",
    "DeviceSpec",
    "Endpoints",
    "EnrollmentEntry",
    "Fleet",
    "FleetView",
    "Mailbox",
    "load_enrollment",
    "require_coap_keys",
    "with_coap_share",
]

log = logging.getLogger(__name__)

Observer = Callable[[StatusReport], None]
ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)


@dataclass(frozen=True)
class DeviceSpec:
    """One enrolled simulated device, as ``fleet-sim keys`` wrote it."""

    device_id: str
    device_class: str
    key_path: Path
    tags: tuple[str, ...] = ()
    transport: Literal["mqtt", "coap"] = "mqtt"
    broker_password: str | None = None
    """Its broker login's password, when the server manages logins (``BROKER_LOGINS``)."""
    coap_keys: OscoreKeys | None = None
    """Its OSCORE keys (``COAP_KEYS``), which a CoAP device's requests need."""


def require_coap_keys(specs: Sequence[DeviceSpec]) -> None:
    """ValueError naming CoAP devices that have no OSCORE keys: the server would answer
    each of their requests 4.01."""
    unkeyed = [s.device_id for s in specs if s.transport == "coap" and s.coap_keys is None]
    if unkeyed:
        raise ValueError(
            f"CoAP devices need their OSCORE keys ({COAP_KEYS_FILE} beside devices.json: "
            "`fleet device coap-keys ID` or a provisioning bundle); none for "
            f"{', '.join(unkeyed[:3])}{' …' if len(unkeyed) > 3 else ''}"
        )


def with_coap_share(specs: Sequence[DeviceSpec], share: float) -> list[DeviceSpec]:
    """Every device talks MQTT, except an evenly spread ``share`` that talks CoAP."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"CoAP share must be in [0, 1], got {share}")
    return [
        replace(spec, transport="coap" if int((i + 1) * share) > int(i * share) else "mqtt")
        for i, spec in enumerate(specs)
    ]


class EnrollmentEntry(BaseModel):
    """One element of ``devices.json``: what the server imports to enroll a device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: DeviceId
    device_class: Name
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$", description="raw Ed25519 key, hex")
    tags: tuple[str, ...] = ()


ENROLLMENT: TypeAdapter[list[EnrollmentEntry]] = TypeAdapter(list[EnrollmentEntry])


class BrokerLoginEntry(BaseModel):
    """One of the ``broker_logins`` an enrollment answered with."""

    model_config = ConfigDict(extra="forbid")
    username: DeviceId
    client_id: DeviceId
    password: str = Field(min_length=1)


BROKER_LOGINS_FILE = "broker-logins.json"
COAP_KEYS_FILE = "coap-keys.json"
COAP_KEYS: TypeAdapter[dict[str, OscoreKeys]] = TypeAdapter(dict[str, OscoreKeys])
"""Device id → its OSCORE keys (``POST /devices/{id}/coap-keys`` or its bundle)."""
BROKER_LOGINS: TypeAdapter[list[BrokerLoginEntry]] = TypeAdapter(list[BrokerLoginEntry])


def load_enrollment(keys_dir: Path) -> list[DeviceSpec]:
    """Read ``devices.json`` from a ``fleet-sim keys`` directory (ValueError if bad), and
    ``broker-logins.json`` beside it if there is one: the enrollment answer's
    ``broker_logins``, saved by whoever enrolled the devices."""
    entries = ENROLLMENT.validate_json((keys_dir / "devices.json").read_bytes())
    coap_path = keys_dir / COAP_KEYS_FILE
    coap_keys = COAP_KEYS.validate_json(coap_path.read_bytes()) if coap_path.exists() else {}
    logins_path = keys_dir / BROKER_LOGINS_FILE
    passwords = (
        {x.username: x.password for x in BROKER_LOGINS.validate_json(logins_path.read_bytes())}
        if logins_path.exists()
        else {}
    )
    return [
        DeviceSpec(
            device_id=entry.id,
            device_class=entry.device_class,
            key_path=keys_dir / f"{entry.id}.key",
            tags=entry.tags,
            broker_password=passwords.get(entry.id),
            coap_keys=coap_keys.get(entry.id),
        )
        for entry in entries
    ]


@dataclass(frozen=True)
class Endpoints:
    mqtt_host: str
    mqtt_port: int
    http_base: str
    coap_uri: str | None = None
    """``coap://host:port`` for devices whose spec says ``transport="coap"``."""


class _MqttStatusSink:
    def __init__(self, link: DeviceLink, observer: Observer | None) -> None:
        self._link = link
        self._observer = observer

    async def send_status(self, report: StatusReport, envelope: Envelope) -> None:
        try:
            self._link.publish(status_topic(report.device_id), envelope.to_bytes())
        except LinkError as exc:
            log.error("%s: status %d lost: %s", report.device_id, report.counter, exc)
        if self._observer is not None:
            self._observer(report)


@dataclass
class DeviceAgent:
    """One simulated device process; ``run`` returns only by cancellation or power loss."""

    key: SigningKey
    directory: Path
    device_id: str
    endpoints: Endpoints
    hub: MqttHub
    http: httpx.AsyncClient
    clock: Clock
    rng: random.Random
    faults: Faults = field(default_factory=Faults)
    fsync: bool = True
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)
    observer: Observer | None = None
    capabilities: DeviceCapabilities = FACTORY_CAPABILITIES
    broker_password: str | None = None
    fetcher: HttpArtifactFetcher | None = field(default=None, init=False)

    async def run(self) -> None:
        mailbox = Mailbox()
        link = DeviceLink(
            self.hub,
            device_id=self.device_id,
            host=self.endpoints.mqtt_host,
            port=self.endpoints.mqtt_port,
            on_desired=mailbox.put,
            rng=self.rng,
            password=self.broker_password,
        )
        device = self._device(link)
        try:
            await self._connect(link)
            await device.start()
            while True:
                await device.on_desired(await mailbox.get())
        except PowerLoss:
            log.info("%s: power lost", self.device_id)
            link.abort()
            raise
        except BaseException:
            await link.close()
            raise

    def _device(self, link: DeviceLink) -> Device:
        flaky = self.faults.flaky_link
        self.fetcher = HttpArtifactFetcher(
            self.http,
            self.endpoints.http_base,
            policy=self.fetch_policy,
            link_fault=LinkFault(flaky, self.rng) if flaky else None,
        )
        return Device(
            key=self.key,
            store=StateStore(self.directory / "state.json", fsync=self.fsync),
            flash=Flash(self.directory),
            fetcher=self.fetcher,
            sink=_MqttStatusSink(link, self.observer),
            clock=self.clock,
            rng=self.rng,
            faults=self.faults,
            capabilities=self.capabilities,
        )

    async def _connect(self, link: DeviceLink) -> None:
        delay = 0.2
        while True:
            try:
                await link.connect()
                return
            except (LinkError, TimeoutError) as exc:
                log.info("%s: %s; retrying", self.device_id, exc)
            await asyncio.sleep(delay * (0.5 + self.rng.random()))
            delay = min(delay * 2, 10.0)


@dataclass
class FleetView:
    """The newest status of every device, as the devices reported it."""

    total: int
    latest: dict[str, StatusReport] = field(default_factory=dict)
    restarts: int = 0

    def record(self, report: StatusReport) -> None:
        self.latest[report.device_id] = report

    def counts(self) -> Counter[str]:
        """Devices per latest state; ``failed``, ``rolled_back``, ``refused`` per error code."""
        counts = Counter(
            f"{report.state.value} ({report.error_code})"
            if report.error_code
            else report.state.value
            for report in self.latest.values()
        )
        counts["unreported"] = self.total - len(self.latest)
        return +counts

    def healthy_on(self, release_digest: str) -> int:
        return sum(
            1
            for report in self.latest.values()
            if report.state == DeviceState.HEALTHY
            and report.running_release_digest == release_digest
        )


@dataclass
class Fleet:
    """Provision (if needed) and run simulated devices until a condition or a timeout."""

    devices: Sequence[DeviceSpec]
    state_root: Path
    root: Envelope
    endpoints: Endpoints
    clock: Clock
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    fsync: bool = False
    restart_delay: float = 0.5
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)
    observers: list[Observer] = field(default_factory=list)
    capabilities: DeviceCapabilities = FACTORY_CAPABILITIES
    """Called with every status report, after ``view`` has recorded it."""
    coap_loss: float = 0.0
    """Share of CoAP datagrams dropped each way (a relay between devices and server)."""
    coap_ack_timeout: float = 0.5
    view: FleetView = field(init=False)
    coap_loss_stats: LossStats | None = field(default=None, init=False)
    """Datagrams the lossy relay forwarded and dropped, when ``coap_loss`` > 0."""
    _coap: CoapChannel | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        verify_pinned_root(self.root)
        self.view = FleetView(total=len(self.devices))

    async def run(self, *, until: Callable[[FleetView], bool] | None, timeout: float) -> bool:
        """Run until ``until(view)`` holds (True) or ``timeout`` seconds pass (False)."""
        relay = await self._coap_channel()
        hub = MqttHub()
        tls = ssl.create_default_context()  # loading CA certificates per client costs ~15 ms
        tasks = [
            asyncio.create_task(self._supervise(spec, hub, tls), name=spec.device_id)
            for spec in self.devices
        ]
        try:
            return await self._wait(until, timeout)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await hub.aclose()
            if relay is not None:
                relay.close()

    async def _coap_channel(self) -> LossyUdpRelay | None:
        if not any(spec.transport == "coap" for spec in self.devices):
            return None
        uri = self.endpoints.coap_uri
        if uri is None:
            raise ValueError("CoAP devices need Endpoints.coap_uri")
        require_coap_keys(self.devices)
        relay = None
        if self.coap_loss > 0.0:
            host, _, port = uri.removeprefix("coap://").rpartition(":")
            relay = LossyUdpRelay((host, int(port)), self.coap_loss, seed=self.seed)
            self.coap_loss_stats = relay.stats
            relay_host, relay_port = await relay.start()
            uri = f"coap://{relay_host}:{relay_port}"
        self._coap = CoapChannel(uri, ack_timeout=self.coap_ack_timeout)
        return relay

    async def _wait(self, until: Callable[[FleetView], bool] | None, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if until is not None and until(self.view):
                return True
            await asyncio.sleep(0.05)
        return until is None

    def _observe(self, report: StatusReport) -> None:
        self.view.record(report)
        for observer in self.observers:
            observer(report)

    async def _supervise(self, spec: DeviceSpec, hub: MqttHub, tls: ssl.SSLContext) -> None:
        directory = self.state_root / spec.device_id
        store = StateStore(directory / "state.json", fsync=self.fsync)
        if not store.exists():
            provision(
                store, device_id=spec.device_id, device_class=spec.device_class, root=self.root
            )
        key = load_signing_key(spec.key_path)
        rng = random.Random(f"{self.seed}:{spec.device_id}")
        while True:
            try:
                if self._coap is not None and spec.transport == "coap":
                    await self._coap_agent(spec, key, rng).run()
                else:
                    async with httpx.AsyncClient(
                        verify=tls, timeout=10.0, limits=ONE_CONNECTION
                    ) as http:
                        agent = DeviceAgent(
                            key=key,
                            directory=directory,
                            device_id=spec.device_id,
                            endpoints=self.endpoints,
                            hub=hub,
                            http=http,
                            clock=self.clock,
                            rng=rng,
                            faults=self.faults,
                            fsync=self.fsync,
                            fetch_policy=self.fetch_policy,
                            observer=self._observe,
                            capabilities=self.capabilities,
                            broker_password=spec.broker_password,
                        )
                        await agent.run()
            except PowerLoss:
                self.view.restarts += 1
            except Exception:
                log.exception("%s: device process crashed; it stays down", spec.device_id)
                return
            await asyncio.sleep(self.restart_delay)

    def _coap_agent(self, spec: DeviceSpec, key: SigningKey, rng: random.Random) -> CoapDeviceAgent:
        assert self._coap is not None, "run() set up the CoAP channel"
        return CoapDeviceAgent(
            key=key,
            directory=self.state_root / spec.device_id,
            device_id=spec.device_id,
            channel=self._coap,
            clock=self.clock,
            rng=rng,
            faults=self.faults,
            fsync=self.fsync,
            fetch_policy=self.fetch_policy,
            observer=self._observe,
            capabilities=self.capabilities,
            coap_keys=spec.coap_keys,
        )
