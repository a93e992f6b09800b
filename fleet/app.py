"""The composition root: settings → store → services → API and transports.

Nothing is built at import time; ``build_server`` wires one server process and
``FleetServer.start``/``stop`` run its moving parts (broker, MQTT, workers). ``stop``
drains: it stops taking device messages, finishes the ones it holds and publishes the
director manifests still queued before it disconnects (docs/server.md "Stopping").
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from fastapi import FastAPI
from sqlalchemy import Engine

from fleet.api.app import create_api
from fleet.api.context import ApiContext
from fleet.domain.records import Role as TokenRole
from fleet.domain.server_names import SERVER_NAME_PREFIX, is_server_name
from fleet.observability import Metrics
from fleet.ratelimit import ApiRates, DeviceBudget, RateLimiter, parse_rate
from fleet.readiness import ReadinessProbe
from fleet.rollout_worker import RolloutEngine
from fleet.root_store import RootStore
from fleet.services.director import Director
from fleet.services.drift_gate import drift_gates
from fleet.services.telemetry import TelemetryIngest, TelemetryPolicy
from fleet.services.tokens import create_token
from fleet.settings import Settings
from fleet.store import BlobStore, SqlUnitOfWork, UnitOfWork, make_engine, upgrade
from fleet.store.db import make_session_factory
from fleet.store.leases import EngineLease
from fleet.transports.coap_server import CoapServer, NotifyingPublisher, build_coap_server
from fleet.transports.dynsec import DynsecAccounts
from fleet.transports.embedded_broker import Broker, free_port, running_mosquitto
from fleet.transports.errors import TransportError
from fleet.transports.mqtt import MqttEndpoint
from fleet.transports.mqtt_fleet import DeviceMessage, MqttFleetTransport
from fleet.workers import BrokerAccountSync, DeviceInbox, OutboxPump
from schemas import Role
from signer.keys import KeyFileError, SigningKey, load_signing_key

__all__ = ["ConfigurationError", "FleetServer", "build_server", "utc_now"]

SERVER_USERNAME = "fleet-server"
_log = structlog.get_logger(__name__)


class ConfigurationError(RuntimeError):
    """The server cannot start with these settings; the message says what to change."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FleetServer:
    settings: Settings
    api: FastAPI
    roots: RootStore
    new_uow: Callable[[], UnitOfWork]
    transport: MqttFleetTransport
    pump: OutboxPump
    inbox: DeviceInbox
    mqtt_endpoint: MqttEndpoint
    embedded_broker_port: int | None
    engine: Engine
    broker: Broker | None = None
    rollout_engine: RolloutEngine | None = None
    coap: CoapServer | None = None
    broker_accounts: DynsecAccounts | None = None
    account_sync: BrokerAccountSync | None = None
    draining: threading.Event = field(default_factory=threading.Event)
    """Set by ``stop``: ``/readyz`` answers 503 from then on."""
    _running: ExitStack = field(default_factory=ExitStack, repr=False)
    _coap_running: bool = field(default=False, repr=False)

    def start(self) -> None:
        if self.embedded_broker_port is not None:
            self.broker = self._running.enter_context(
                running_mosquitto(
                    self.settings.data_dir / "mosquitto", port=self.embedded_broker_port
                )
            )
        try:
            if self.coap is not None:
                self._start_coap(self.coap)
            self.transport.start()
            if self.broker_accounts is not None:
                self.broker_accounts.start()
                self._running.callback(self.broker_accounts.stop)
        except BaseException:
            self._running.close()  # never leave a broker we started behind
            raise
        self.pump.start()
        self.inbox.start()
        if self.account_sync is not None:
            self.account_sync.start()
        if self.rollout_engine is not None:
            self.rollout_engine.start()
        _log.info("server_started", mqtt=f"{self.mqtt_endpoint.host}:{self.mqtt_endpoint.port}")

    def stop(self, *, drain_timeout: float = 5.0) -> None:
        """Drain, then stop, in the order that loses nothing: the rollout lease goes
        first (another replica's engine takes over at once), then device intake (MQTT
        unsubscribes, so the broker sends the shared subscription to the other replicas;
        CoAP stops), then what was received is ingested, then the manifests still queued
        are published. ``drain_timeout`` bounds the ingesting and the publishing."""
        self.draining.set()
        started = time.monotonic()
        if self.rollout_engine is not None:
            self.rollout_engine.stop()
        try:
            self.transport.stop_receiving()
        except TransportError as exc:  # the broker is gone: nothing more arrives anyway
            _log.warning("mqtt_unsubscribe_failed", error=str(exc))
        if self.coap is not None and self._coap_running:
            self.coap.stop()
            self._coap_running = False
        drained = self.inbox.drain(drain_timeout)
        published = self.pump.drain(max(0.5, drain_timeout - (time.monotonic() - started)))
        if self.account_sync is not None:  # its queue is in the database: nothing is lost
            self.account_sync.stop()
        self.transport.stop()
        self._running.close()
        self.engine.dispose()
        _log.info(
            "server_stopped",
            drained=drained,
            manifests_published=published,
            seconds=round(time.monotonic() - started, 2),
        )

    def _start_coap(self, coap: CoapServer) -> None:
        try:
            coap.start()
        except TransportError as exc:
            raise ConfigurationError(f"{exc} (set FLEET_COAP_HOST, FLEET_COAP_PORT)") from exc
        self._coap_running = True


def _load_director_key(settings: Settings, roots: RootStore) -> SigningKey:
    path = settings.director_key_path or settings.data_dir / "director.key"
    passphrase = settings.director_key_passphrase
    try:
        key = load_signing_key(path, passphrase=passphrase.encode() if passphrase else None)
    except KeyFileError as exc:
        raise ConfigurationError(f"director key: {exc} (set FLEET_DIRECTOR_KEY_PATH)") from exc
    director_role = roots.trusted().role(Role.DIRECTOR)
    if key.keyid not in director_role.keyids:
        raise ConfigurationError(
            f"director key {key.keyid[:12]} is not a director key of root "
            f"v{roots.trusted().version}; devices would refuse every manifest"
        )
    return key


def _load_roots(settings: Settings) -> RootStore:
    roots = RootStore(settings.data_dir / "roots")
    if settings.root_path is not None:
        try:
            roots.add(settings.root_path.read_bytes())
        except OSError as exc:
            raise ConfigurationError(f"cannot read root {settings.root_path}: {exc}") from exc
    if roots.empty:
        raise ConfigurationError(
            "no root metadata pinned: set FLEET_ROOT_PATH to the root.json made by "
            "`fleet-sign root init`"
        )
    return roots


def _mqtt_endpoint(settings: Settings) -> tuple[MqttEndpoint, int | None]:
    if settings.mqtt_url:
        ca_file = str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
        try:
            return MqttEndpoint.parse(settings.mqtt_url, ca_file=ca_file), None
        except ValueError as exc:
            raise ConfigurationError(f"FLEET_MQTT_URL: {exc}") from exc
    port = settings.embedded_mqtt_port or free_port()
    return MqttEndpoint("127.0.0.1", port, SERVER_USERNAME), port


def _broker_accounts(
    settings: Settings,
    endpoint: MqttEndpoint,
    new_uow: Callable[[], UnitOfWork],
    clock: Callable[[], datetime],
    metrics: Metrics,
) -> tuple[DynsecAccounts | None, BrokerAccountSync | None]:
    if settings.broker_accounts == "none":
        return None, None
    if not settings.mqtt_url:
        raise ConfigurationError(
            "FLEET_BROKER_ACCOUNTS=dynsec manages an external Mosquitto's logins: set "
            "FLEET_MQTT_URL to it (the embedded broker is for development, anonymous)"
        )
    outside = [
        f"{setting}={name!r}"
        for setting, name in (
            ("the FLEET_MQTT_URL username", endpoint.username or ""),
            ("FLEET_MQTT_CLIENT_ID", settings.mqtt_client_id),
        )
        if not is_server_name(name)
    ]
    if outside:
        # Device ids may not start with the prefix, so these names can never be handed
        # to, or taken over by, a device.
        raise ConfigurationError(
            f"with FLEET_BROKER_ACCOUNTS=dynsec the server's broker username and client id "
            f"must start with {SERVER_NAME_PREFIX!r}: {', '.join(outside)}"
        )
    accounts = DynsecAccounts(endpoint, client_id=f"{settings.mqtt_client_id}-accounts")
    return accounts, BrokerAccountSync(new_uow, accounts, clock=clock, metrics=metrics)


def _telemetry_policy(settings: Settings) -> TelemetryPolicy:
    return TelemetryPolicy(
        min_reporters=settings.telemetry_min_reporters,
        central_epsilon=settings.telemetry_central_epsilon,
        grace=timedelta(seconds=settings.telemetry_grace_seconds),
        retention=timedelta(days=settings.telemetry_retention_days),
    )


def build_server(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> FleetServer:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)

    def new_uow() -> UnitOfWork:
        return SqlUnitOfWork(sessions)

    roots = _load_roots(settings)
    director = Director(
        _load_director_key(settings, roots), timedelta(seconds=settings.director_ttl_seconds)
    )
    if settings.bootstrap_admin_token:
        create_token(
            new_uow(),
            name="bootstrap-admin",
            role=TokenRole.ADMIN,
            actor="server",
            now=clock(),
            secret=settings.bootstrap_admin_token,
        )
    metrics = Metrics()
    limiter = RateLimiter(settings.rate_limit_storage)
    budget = DeviceBudget(limiter, parse_rate(settings.device_message_rate), metrics)
    endpoint, embedded_port = _mqtt_endpoint(settings)
    inbox: queue.Queue[DeviceMessage] = queue.Queue()
    transport = MqttFleetTransport(
        endpoint,
        inbox,
        client_id=settings.mqtt_client_id,
        share_group=settings.mqtt_share_group,
        clock=clock,
        budget=budget,
    )
    blobs = BlobStore(settings.blob_dir)
    coap = build_coap_server(
        host=settings.coap_host,
        port=settings.coap_port,
        new_uow=new_uow,
        blobs=blobs,
        inbox=inbox,
        roots=roots.newer_than_first,
        clock=clock,
        metrics=metrics,
        budget=budget,
    )
    accounts, account_sync = _broker_accounts(settings, endpoint, new_uow, clock, metrics)
    draining = threading.Event()
    pump = OutboxPump(
        new_uow,
        NotifyingPublisher(transport, coap.notify),
        roots=roots.newer_than_first,
        clock=clock,
        metrics=metrics,
    )
    api = create_api(
        ApiContext(
            new_uow=new_uow,
            blobs=blobs,
            director=director,
            root=roots.trusted,
            roots=roots.newer_than_first,
            clock=clock,
            metrics=metrics,
            max_artifact_bytes=settings.max_artifact_bytes,
            on_directions_queued=pump.wake,
            telemetry_min_reporters=settings.telemetry_min_reporters,
            api_rates=ApiRates(
                per_token=parse_rate(settings.api_rate_per_token),
                per_address=parse_rate(settings.api_rate_per_address),
            ),
            rate_limiter=limiter,
            broker_logins=account_sync is not None,
            device_mqtt_url=settings.public_mqtt_url
            or (f"mqtt://{endpoint.host}:{embedded_port}" if embedded_port else None),
            device_http_base=f"{settings.public_http_url.rstrip('/')}/api/v1"
            if settings.public_http_url
            else None,
            pinned_root=roots.newest,
            on_broker_accounts_queued=account_sync.wake if account_sync else lambda: None,
            readiness=ReadinessProbe(
                engine, broker_connected=lambda: transport.connected, draining=draining.is_set
            ),
        )
    )
    telemetry = TelemetryIngest(new_uow, clock=clock, policy=_telemetry_policy(settings))
    return FleetServer(
        settings=settings,
        api=api,
        roots=roots,
        new_uow=new_uow,
        transport=transport,
        pump=pump,
        inbox=DeviceInbox(new_uow, inbox, metrics=metrics, telemetry=telemetry),
        mqtt_endpoint=endpoint,
        embedded_broker_port=embedded_port,
        engine=engine,
        coap=coap,
        broker_accounts=accounts,
        account_sync=account_sync,
        draining=draining,
        rollout_engine=RolloutEngine(
            new_uow,
            director,
            EngineLease(engine),
            clock=clock,
            on_directions_queued=pump.wake,
            metrics=metrics,
            root=roots.trusted,
            extra_gates=drift_gates() if settings.telemetry_drift_gate else None,
        ),
    )
