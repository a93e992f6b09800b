"""A userspace UDP relay that drops a share of datagrams each way (``tc netem`` stand-in).

Devices send to the relay; it forwards each device's datagrams to the server from a
socket of that device's own, so the server sees one peer per device, and sends the
answers back. Each datagram, in either direction, is dropped with probability ``loss``
drawn from a seeded RNG.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, cast

__all__ = ["LossStats", "LossyUdpRelay"]

Address = tuple[Any, ...]


@dataclass
class LossStats:
    forwarded: int = 0
    dropped: int = 0


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyUdpRelay, client: Address) -> None:
        self._relay = relay
        self._client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay.to_client(data, self._client)


class _Downstream(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyUdpRelay) -> None:
        self._relay = relay

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay.to_server(data, addr)


@dataclass
class LossyUdpRelay:
    server: tuple[str, int]
    loss: float
    seed: int = 0
    stats: LossStats = field(default_factory=LossStats)
    _rng: random.Random = field(init=False)
    _listener: asyncio.DatagramTransport | None = field(default=None, init=False)
    _upstreams: dict[Address, _Upstream] = field(default_factory=dict, init=False)
    _pending: dict[Address, list[bytes]] = field(default_factory=dict, init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")
        self._rng = random.Random(self.seed)

    async def start(self, host: str = "127.0.0.1") -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Downstream(self), local_addr=(host, 0)
        )
        self._listener = transport
        address: tuple[str, int] = transport.get_extra_info("sockname")[:2]
        return address

    def close(self) -> None:
        for upstream in self._upstreams.values():
            if upstream.transport is not None:
                upstream.transport.close()
        self._upstreams.clear()
        if self._listener is not None:
            self._listener.close()

    def _dropped(self) -> bool:
        if self._rng.random() < self.loss:
            self.stats.dropped += 1
            return True
        self.stats.forwarded += 1
        return False

    def to_server(self, data: bytes, client: Address) -> None:
        if self._dropped():
            return
        upstream = self._upstreams.get(client)
        if upstream is None:
            self._open_upstream(client, data)
        elif upstream.transport is None:
            self._pending[client].append(data)
        else:
            upstream.transport.sendto(data)

    def to_client(self, data: bytes, client: Address) -> None:
        if self._listener is not None and not self._dropped():
            self._listener.sendto(data, client)

    def _open_upstream(self, client: Address, first: bytes) -> None:
        upstream = self._upstreams[client] = _Upstream(self, client)
        self._pending[client] = [first]

        async def connect() -> None:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: upstream, remote_addr=self.server
            )
            for data in self._pending.pop(client, []):
                transport.sendto(data)

        task = asyncio.get_running_loop().create_task(connect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
