"""Names the server keeps for its own broker logins and client ids.

A device's id is its broker username and its client id. A device enrolled under the
server's username would, on a broker whose logins the server manages, be handed the
server's login; one enrolled under a replica's client id could take that replica's
session over. So the server's names live in a namespace no device id may enter.
"""

from __future__ import annotations

__all__ = ["SERVER_NAME_PREFIX", "is_server_name"]

SERVER_NAME_PREFIX = "fleet-"


def is_server_name(name: str) -> bool:
    """Case-insensitively: brokers differ on whether usernames are case-sensitive."""
    return name.lower().startswith(SERVER_NAME_PREFIX)
