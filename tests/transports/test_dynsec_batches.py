"""How account changes are cut into control messages the broker will take."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.domain.records import BrokerAccountChange
from fleet.transports.dynsec import _device_commands, command_batches

device_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=64)
changes = st.lists(
    st.builds(
        BrokerAccountChange,
        id=st.integers(0, 10**9),
        device_id=device_ids,
        action=st.sampled_from(["create", "disable", "delete"]),
        password=st.text(min_size=32, max_size=32),
    ),
    max_size=300,
)


def _as_sent(batch: list[dict[str, object]]) -> bytes:
    """The message ``DynsecAccounts`` publishes for a batch, correlation data included."""
    request = str(uuid.uuid4())
    keyed = [c | {"correlationData": f"{request}:{i}"} for i, c in enumerate(batch)]
    return json.dumps({"commands": keyed}).encode()


@given(changes, st.integers(2_000, 131_072), st.integers(1, 50))
def test_batches_keep_every_command_in_order_within_both_limits(
    queued: list[BrokerAccountChange], max_bytes: int, max_count: int
) -> None:
    commands = [c for change in queued for c in _device_commands(change)]
    batches = command_batches(commands, max_bytes=max_bytes, max_count=max_count)
    assert [c for batch in batches for c in batch] == commands
    assert all(0 < len(batch) <= max_count for batch in batches)
    assert all(len(_as_sent(batch)) <= max_bytes for batch in batches)


def test_three_hundred_new_logins_fit_a_128_kib_broker_only_when_split() -> None:
    queued = [BrokerAccountChange(n, f"dev-{n:05d}", "create", "p" * 32) for n in range(300)]
    commands = [c for change in queued for c in _device_commands(change)]
    assert len(_as_sent(commands)) > 131_072  # the message that stalled the sync
    batches = command_batches(commands, max_bytes=32_768, max_count=20)
    assert len(batches) == 30
    assert max(len(_as_sent(b)) for b in batches) <= 32_768


def test_a_command_too_large_for_any_message_is_refused() -> None:
    with pytest.raises(ValueError, match="larger than"):
        command_batches(
            [{"command": "getClient", "username": "x" * 500}], max_bytes=300, max_count=5
        )
