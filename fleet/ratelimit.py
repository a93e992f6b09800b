"""Rate limits, kept by the ``limits`` library: the admin API per token and per client
address, and a message budget per device on MQTT and CoAP ingest (docs/server.md).

Sliding-window counters (two counters per key, so a budget for each of 100,000 devices
costs little memory, and no burst at a window's edge as fixed windows allow). They live
in this process by default (``memory://``); a shared store (``redis://host:6379``) makes
replicas share one budget. A refused hit says how long until a retry can pass, which
becomes ``Retry-After`` (HTTP) or ``Max-Age`` on a 4.29 (CoAP, RFC 8516).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from fleet.observability import Metrics

__all__ = ["ApiRates", "DeviceBudget", "RateLimiter", "parse_rate"]


def parse_rate(text: str) -> RateLimitItem:
    """``"100/second"``, ``"600 per minute"``: ValueError naming the text if not a rate."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a rate such as '100/second' or '600/minute'") from exc


@dataclass(frozen=True)
class ApiRates:
    """The admin API's limits: per bearer token, and per client address."""

    per_token: RateLimitItem
    per_address: RateLimitItem


class RateLimiter:
    def __init__(
        self, storage_uri: str = "memory://", *, clock: Callable[[], float] = time.time
    ) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(storage_from_string(storage_uri))
        self._clock = clock

    def try_hit(self, rate: RateLimitItem, *key: str) -> int | None:
        """Count one hit; None if it is within ``rate``, else whole seconds to wait."""
        if self._limiter.hit(rate, *key):
            return None
        reset = self._limiter.get_window_stats(rate, *key).reset_time
        return max(1, math.ceil(reset - self._clock()))


class DeviceBudget:
    """Messages a device may send per window; the excess is dropped and counted.

    Each device has its own budget, so a flooding device costs the others nothing, and
    the window slides, so its own later messages pass again once it slows down. Keys
    name the transport, and for CoAP the source address too: MQTT topics are bound to
    the device by the broker's ACL, CoAP paths are not (yet), and a forger must not be
    able to spend a device's budget from elsewhere.
    """

    def __init__(self, limiter: RateLimiter, rate: RateLimitItem, metrics: Metrics) -> None:
        self._limiter = limiter
        self._rate = rate
        self._metrics = metrics

    def admit(self, device_id: str, kind: str, transport: str, source: str = "") -> int | None:
        """None to take the message, else the seconds until the device may send again."""
        wait = self._limiter.try_hit(self._rate, "device", transport, device_id, source)
        if wait is not None:
            self._metrics.device_messages_dropped.labels(kind=kind, reason="over_budget").inc()
            self._metrics.rate_limited.labels(scope=f"device_{transport}").inc()
        return wait
