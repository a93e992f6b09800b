"""Replicas share one budget through Redis (``FLEET_RATE_LIMIT_STORAGE=redis://…``),
against the Redis every development and CI machine runs at 127.0.0.1:6379."""

from __future__ import annotations

import secrets
import socket

import pytest

from fleet.ratelimit import RateLimiter, parse_rate

REDIS = "redis://127.0.0.1:6379"


def _redis_listening() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _redis_listening(), reason="no Redis at 127.0.0.1:6379")


def test_two_replicas_spend_one_budget_through_redis() -> None:
    rate = parse_rate("10/minute")
    token = "test-" + secrets.token_hex(8)  # a key no other run shares
    first, second = RateLimiter(REDIS), RateLimiter(REDIS)
    waits = [limiter.try_hit(rate, "api-token", token) for limiter in [first, second] * 5]
    assert waits == [None] * 10
    assert first.try_hit(rate, "api-token", token) is not None
    assert second.try_hit(rate, "api-token", token) is not None
    # The positive control: a replica with its own memory has the whole budget.
    assert RateLimiter("memory://").try_hit(rate, "api-token", token) is None
