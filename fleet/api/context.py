"""Everything the API's routes need, built by the composition root and passed in."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from fleet.domain.aggregation import DEFAULT_MIN_REPORTERS
from fleet.observability import Metrics
from fleet.ratelimit import ApiRates, RateLimiter
from fleet.services.director import Director
from fleet.services.ports import BlobStore, UnitOfWork
from schemas import Envelope, RootMetadata

__all__ = ["ApiContext"]


@dataclass(frozen=True)
class ApiContext:
    new_uow: Callable[[], UnitOfWork]
    blobs: BlobStore
    director: Director
    root: Callable[[], RootMetadata]
    roots: Callable[[], Sequence[Envelope]]
    clock: Callable[[], datetime]
    metrics: Metrics
    max_artifact_bytes: int
    on_directions_queued: Callable[[], None] = lambda: None
    telemetry_min_reporters: int = DEFAULT_MIN_REPORTERS
    api_rates: ApiRates | None = None  # None: no rate limits (tests that do not test them)
    rate_limiter: RateLimiter = field(default_factory=RateLimiter)
    device_mqtt_url: str | None = None
    """The broker's device listener, for provisioning bundles (FLEET_PUBLIC_MQTT_URL)."""
    device_http_base: str | None = None
    """What devices prefix to /artifacts/{sha256} (FLEET_PUBLIC_HTTP_URL + /api/v1);
    None: the URL the provisioning request came in on."""
    pinned_root: Callable[[], Envelope] | None = None
    """The root envelope a new device pins (the newest trusted)."""
    broker_logins: bool = False
    """The server manages devices' broker logins (FLEET_BROKER_ACCOUNTS=dynsec)."""
    on_broker_accounts_queued: Callable[[], None] = lambda: None
    readiness: Callable[[], Mapping[str, str]] = lambda: {}
    """``GET /readyz``'s checks: name → "ok" or why not (``fleet.readiness``)."""
