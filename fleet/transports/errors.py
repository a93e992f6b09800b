"""Transport errors.

Exception tree::

    TransportError          a transport cannot do what was asked right now
    ├── BrokerUnavailable   not connected, or the broker did not answer in time
    └── PublishFailed       the broker refused or dropped a publish
"""

from __future__ import annotations

__all__ = ["BrokerUnavailable", "PublishFailed", "TransportError"]


class TransportError(RuntimeError):
    pass


class BrokerUnavailable(TransportError):
    pass


class PublishFailed(TransportError):
    pass
