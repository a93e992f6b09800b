"""An aiocoap server in its own thread and event loop, beside the rest of ``fleet serve``.

The composition root builds the resources (``fleet.transports.coap``) and this runs
them; ``notify`` may be called from any thread (the outbox pump calls it after a publish
is acknowledged) and tells observers of those devices that their manifest changed.
Datagrams that are not CoAP at all never reach a resource; aiocoap logs and drops them,
and ``_MalformedCounter`` counts that log record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from aiocoap import Context

from fleet.observability import Metrics
from fleet.ratelimit import DeviceBudget
from fleet.services.coap_keys import coap_keys_for_kid, reserve_sequences
from fleet.services.delivery import DesiredStatePublisher
from fleet.services.device_auth import DeviceMessageRefused
from fleet.services.manifests import current_delivery, verify_telemetry_sender
from fleet.services.ports import BlobStore, UnitOfWork
from fleet.transports.coap import CoapPorts, ManifestResource, build_public_site, build_site
from fleet.transports.coap_oscore import DeviceContexts, GatedSite
from fleet.transports.errors import TransportError
from fleet.transports.mqtt_fleet import DeviceMessage
from schemas import DocumentError, Envelope

__all__ = ["CoapServer", "NotifyingPublisher", "build_coap_server", "free_udp_port"]

_log = structlog.get_logger(__name__)


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _probe_bind(host: str, port: int) -> None:
    """Raise ``OSError`` if the port is taken, before aiocoap tries.

    aiocoap binds with SO_REUSEPORT, so a second server on the same port would share its
    datagrams with the first instead of failing; and its socket leaks when bind fails.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, socket.AF_INET6, socket.SOCK_DGRAM, 0, socket.AI_V4MAPPED
    )[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        probe.bind(address)


class _MalformedCounter(logging.Filter):
    """aiocoap's only trace of an unparsable datagram is this WARNING; count it."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Ignoring unparsable message"):
            self._metrics.coap_malformed.inc()
        return True


class CoapServer:
    def __init__(
        self, site: Any, manifests: ManifestResource, *, host: str, port: int, metrics: Metrics
    ) -> None:
        self.host = host
        self.port = port
        self._site = site
        self._manifests = manifests
        self._metrics = metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context: Any = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="coap_server", daemon=True)
        self._logger = logging.getLogger(f"coap-server.{port}")
        self._filter = _MalformedCounter(metrics)

    def start(self, timeout: float = 10.0) -> None:
        """Bind and serve; raises ``TransportError`` if the port cannot be bound."""
        self._logger.addFilter(self._filter)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TransportError(f"CoAP server did not start within {timeout:g} s")
        if self._failure is not None:
            self._thread.join()
            raise TransportError(
                f"cannot serve CoAP on {self.host}:{self.port}: {self._failure}"
            ) from self._failure
        _log.info("coap_serving", host=self.host, port=self.port)

    def stop(self, timeout: float = 10.0) -> None:
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout)
        self._logger.removeFilter(self._filter)

    def notify(self, device_ids: Sequence[str]) -> None:
        """Thread-safe: observers of these devices get their new manifest."""
        loop = self._loop
        if loop is not None and device_ids and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._manifests.notify, list(device_ids))

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            self._context = loop.run_until_complete(self._bind())
        except BaseException as exc:  # reported to the starting thread
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _bind(self) -> Any:
        _probe_bind(self.host, self.port)
        return await Context.create_server_context(
            self._site,
            bind=(self.host, self.port),
            loggername=self._logger.name,
            transports=["udp6"],
        )

    async def _shutdown(self) -> None:
        await self._context.shutdown()
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_default_executor()


class NotifyingPublisher:
    """A ``DesiredStatePublisher`` that, once a batch is acknowledged, tells ``notify``
    which devices it carried (so CoAP observers hear of a manifest MQTT just got)."""

    def __init__(
        self, inner: DesiredStatePublisher, notify: Callable[[Sequence[str]], None]
    ) -> None:
        self._inner = inner
        self._notify = notify
        self._batch: list[str] = []

    def publish_desired(self, device_id: str, payload: bytes) -> object:
        self._batch.append(device_id)
        return self._inner.publish_desired(device_id, payload)

    def confirm(self, handles: Sequence[object], *, timeout: float) -> None:
        batch, self._batch = self._batch, []
        self._inner.confirm(handles, timeout=timeout)
        self._notify(batch)


def build_coap_server(
    *,
    host: str,
    port: int,
    new_uow: Callable[[], UnitOfWork],
    blobs: BlobStore,
    inbox: queue.Queue[DeviceMessage],
    roots: Callable[[], Sequence[Envelope]],
    clock: Callable[[], datetime],
    metrics: Metrics,
    budget: DeviceBudget | None = None,
) -> CoapServer:
    """The CoAP resources over the same services MQTT and the API use."""

    def status(device_id: str, payload: bytes) -> None:
        inbox.put(DeviceMessage("status", device_id, payload, clock(), transport="coap"))

    def telemetry(device_id: str, payload: bytes) -> None:
        try:
            verify_telemetry_sender(new_uow(), device_id, payload)
        except (DeviceMessageRefused, DocumentError) as exc:
            metrics.device_messages_dropped.labels(kind="telemetry", reason=exc.code).inc()
            raise
        metrics.coap_telemetry_accepted.inc()
        inbox.put(DeviceMessage("telemetry", device_id, payload, clock(), transport="coap"))

    ports = CoapPorts(
        delivery=lambda device_id: current_delivery(new_uow(), device_id, roots=roots()),
        status=status,
        telemetry=telemetry,
        blobs=blobs,
        budget=budget,
    )
    protected, manifests = build_site(ports, metrics)
    contexts = DeviceContexts(
        lambda kid: coap_keys_for_kid(new_uow(), kid),
        lambda device_id: _DatabaseLeases(new_uow, device_id),
    )
    site = GatedSite(protected, build_public_site(ports, metrics), contexts)
    return CoapServer(site, manifests, host=host, port=port or free_udp_port(host), metrics=metrics)


@dataclass(frozen=True)
class _DatabaseLeases:
    """A device's server sequence numbers, leased from its ``coap_keys`` row."""

    new_uow: Callable[[], UnitOfWork]
    device_id: str

    def reserve(self, count: int) -> range:
        return reserve_sequences(self.new_uow(), self.device_id, count)
