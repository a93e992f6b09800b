"""The fleet's CoAP binding (docs/protocol.md §2): resources over services, routed by a Site.

==============  =====================================================================
``GET /m/{id}``  Observe; the device's current Delivery (the bytes MQTT retains on
                 ``tf/d/{id}/desired``), Block2 when longer than a block; an empty 2.05
                 while the device has no manifest yet
``GET /a/{sha}`` Block2; the artifact's bytes, any block on its own
``POST /s/{id}`` a device-signed status envelope; queued for the device inbox (2.04)
``POST /t/{id}`` a device-signed telemetry envelope, Block1 up to 16 KiB; its signature
                 checked (2.04), then queued for the device inbox
==============  =====================================================================

A device past its message budget (``fleet.ratelimit.DeviceBudget``) gets 4.29 Too Many
Requests with ``Max-Age`` set to the seconds until it may send again (RFC 8516).

Errors are aiocoap's ``RenderableError`` subclasses, which carry their response code;
service errors become them in one place (``_map_refusals``) and every error answer is
counted in one place (``CountingSite``). No database call runs on the event loop:
``CoapPorts`` functions are synchronous and run in the default executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from aiocoap import error, resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat

from fleet.observability import Metrics
from fleet.ratelimit import DeviceBudget
from fleet.services.device_auth import (
    DeviceMessageRefused,
    ForgedMessage,
    MisaddressedMessage,
    ReplayedMessage,
)
from fleet.services.manifests import UnknownDevice
from fleet.services.ports import BlobNotFound, BlobStore
from fleet.transports.coap_blocks import Block1Assembly, block2_slice
from fleet.transports.coap_oscore import OscoreRequired, require_device
from schemas import DocumentError
from schemas.dsse import DEFAULT_ENVELOPE_CAP as SMALL_CAP

__all__ = ["CoapPorts", "CountingSite", "ManifestResource", "build_public_site", "build_site"]

_log = structlog.get_logger(__name__)
JSON = ContentFormat.JSON
OCTETS = ContentFormat.OCTETSTREAM
MANIFEST_MAX_AGE = 60
"""Seconds; an observer re-registers after this (RFC 7641 §3.3.1), which also heals a
lost notification and an observation held by another replica."""


@dataclass(frozen=True)
class CoapPorts:
    """What the resources need from the services; each callable may block."""

    delivery: Callable[[str], bytes | None]
    """Current Delivery bytes of a device, None without a manifest; ``UnknownDevice``."""
    status: Callable[[str, bytes], None]
    """Queue a status envelope for verification and recording."""
    telemetry: Callable[[str, bytes], None]
    """Check a telemetry envelope's signature and queue it, or raise
    ``DeviceMessageRefused``/``DocumentError``."""
    blobs: BlobStore
    budget: DeviceBudget | None = None
    """Messages per device and source address; the excess is answered 4.29."""


@contextlib.contextmanager
def _map_refusals() -> Iterator[None]:
    """Service errors → CoAP errors, in one place."""
    try:
        yield
    except UnknownDevice as exc:
        raise error.NotFound(str(exc)) from exc
    except BlobNotFound as exc:
        raise error.NotFound("no such artifact") from exc
    except ForgedMessage as exc:
        raise error.Unauthorized(exc.code) from exc
    except (MisaddressedMessage, ReplayedMessage) as exc:
        raise error.Forbidden(exc.code) from exc
    except DeviceMessageRefused as exc:
        raise error.BadRequest(exc.code) from exc
    except DocumentError as exc:
        raise error.BadRequest(exc.code) from exc


async def _blocking(function: Callable[..., Any], *args: Any) -> Any:
    with _map_refusals():
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)


def _one_segment(request: Message) -> str:
    path = request.opt.uri_path
    if len(path) != 1 or not path[0]:
        raise error.NotFound()
    return str(path[0])


def _own_device(request: Message) -> str:
    """The device id of the path, which must be the one whose keys protect the request."""
    device_id = _one_segment(request)
    require_device(request, device_id)
    return device_id


def _etag(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:8]


def _accept_json(request: Message) -> None:
    if request.opt.content_format not in (None, JSON):
        raise error.UnsupportedContentFormat("send application/json (50)")


class ManifestResource(resource.ObservableResource, resource.PathCapable):  # type: ignore[misc]
    """``/m/{id}``: observable per device; ``notify`` sends the new state to observers."""

    def __init__(self, ports: CoapPorts, metrics: Metrics) -> None:
        super().__init__()
        self._ports = ports
        self._metrics = metrics
        self._observers: dict[str, set[Any]] = {}

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        return False

    async def add_observation(self, request: Message, observation: Any) -> None:
        device_id = _own_device(request)
        observers = self._observers.setdefault(device_id, set())
        # A device observes once; an OSCORE client that registers again never cancelled
        # the old observation on the wire, so the older ones are ended here.
        for stale in list(observers):
            observers.discard(stale)
            stale.trigger(is_last=True)
        observers.add(observation)

        def cancelled() -> None:
            observers.discard(observation)
            if not observers and self._observers.get(device_id) is observers:
                del self._observers[device_id]

        observation.accept(cancelled)

    def notify(self, device_ids: list[str]) -> None:
        for device_id in device_ids:
            for observation in list(self._observers.get(device_id, ())):
                self._metrics.coap_notifications.inc()
                observation.trigger()

    async def render_get(self, request: Message) -> Message:
        device_id = _own_device(request)
        payload = await _blocking(self._ports.delivery, device_id)
        if payload is None:
            return Message(code=Code.CONTENT, content_format=JSON, max_age=MANIFEST_MAX_AGE)
        block = block2_slice(request, len(payload))
        response = Message(
            code=Code.CONTENT,
            payload=payload[block.start : block.stop],
            content_format=JSON,
            etag=_etag(payload),
            max_age=MANIFEST_MAX_AGE,
        )
        if block.more or block.number or request.opt.block2 is not None:
            response.opt.block2 = block.option
            response.opt.size2 = len(payload)
        return response


class ArtifactResource(resource.Resource, resource.PathCapable):  # type: ignore[misc]
    """``/a/{sha256}``: one block per request, read from the blob store alone."""

    def __init__(self, blobs: BlobStore) -> None:
        super().__init__()
        self._blobs = blobs

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        return False

    async def render_get(self, request: Message) -> Message:
        sha256 = _one_segment(request)
        with _map_refusals():
            length = self._blobs.length(sha256)
            block = block2_slice(request, length)
            data = b"".join(self._blobs.open_range(sha256, block.start, block.stop))
        return Message(
            code=Code.CONTENT,
            payload=data,
            content_format=OCTETS,
            etag=bytes.fromhex(sha256[:16]),
            max_age=86_400,
            block2=block.option,
            size2=length,
        )


class DeviceMessageResource(resource.Resource, resource.PathCapable):  # type: ignore[misc]
    """``/s/{id}`` and ``/t/{id}``: a device-signed envelope, Block1 up to ``max_bytes``."""

    def __init__(
        self,
        accept: Callable[[str, bytes], None],
        *,
        kind: str,
        max_bytes: int,
        budget: DeviceBudget | None = None,
    ) -> None:
        super().__init__()
        self._accept = accept
        self._kind = kind
        self._budget = budget
        self._uploads = Block1Assembly(max_bytes=max_bytes)

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        return False

    async def render_post(self, request: Message) -> Message:
        device_id = _own_device(request)
        _accept_json(request)
        body = self._uploads.feed(request)
        if isinstance(body, Message):
            return body
        if self._budget is not None:
            source = str(request.remote.hostinfo)
            wait = self._budget.admit(device_id, self._kind, "coap", source)
            if wait is not None:  # RFC 8516: Max-Age says when to try again
                return Message(code=Code.TOO_MANY_REQUESTS, max_age=wait)
        await _blocking(self._accept, device_id, body)
        response = Message(code=Code.CHANGED)
        if request.opt.block1 is not None:
            response.opt.block1 = request.opt.block1
        return response


class CountingSite(resource.Site):  # type: ignore[misc]
    """Counts every request by its first path segment and every error answer by code."""

    KNOWN = frozenset({"m", "a", "s", "t", ".well-known"})

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    async def render_to_pipe(self, pipe: Any) -> None:
        path = pipe.request.opt.uri_path
        name = path[0] if path and path[0] in self.KNOWN else "other"
        self._metrics.coap_requests.labels(resource=name).inc()
        try:
            await super().render_to_pipe(pipe)
        except error.RenderableError as exc:
            code = exc.to_message().code
            self._metrics.coap_errors.labels(resource=name, code=code.dotted).inc()
            log = _log.debug if name == "other" else _log.info  # no log floods from scans
            log(
                "coap_request_refused",
                method=str(pipe.request.code),
                path="/" + "/".join(path),
                code=code.dotted,
                reason=str(exc),
            )
            raise
        except Exception:
            self._metrics.coap_errors.labels(resource=name, code="5.00").inc()
            raise


def build_site(ports: CoapPorts, metrics: Metrics) -> tuple[CountingSite, ManifestResource]:
    """The protected site: what a request decrypted with a device's keys reaches."""
    site = CountingSite(metrics)
    manifests = ManifestResource(ports, metrics)
    site.add_resource(["m"], manifests)
    site.add_resource(["a"], ArtifactResource(ports.blobs))
    for path, accept, kind in (("s", ports.status, "status"), ("t", ports.telemetry, "telemetry")):
        site.add_resource(
            [path],
            DeviceMessageResource(accept, kind=kind, max_bytes=SMALL_CAP, budget=ports.budget),
        )
    site.add_resource(
        [".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader)
    )
    return site, manifests


def build_public_site(ports: CoapPorts, metrics: Metrics) -> CountingSite:
    """What an unprotected request reaches: artifacts (signed, so where they come from
    does not matter), the resource list, and 4.01 on every device resource."""
    site = CountingSite(metrics)
    site.add_resource(["a"], ArtifactResource(ports.blobs))
    for path in ("m", "s", "t"):
        site.add_resource([path], OscoreRequired())
    site.add_resource(
        [".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader)
    )
    return site
