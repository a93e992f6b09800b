"""Mosquitto's dynamic security plugin as the broker's account store.

The server sends commands to ``$CONTROL/dynamic-security/v1`` over its own MQTT
connection and reads the answers on ``…/response``. A device's login is a dynsec client
(username and client id = device id, so no other login can take its client id and kick
it off) holding a role of its own that allows ``tf/d/{id}/#`` and nothing else.

One role per device, not one shared role with ``%u`` in its topics: Mosquitto 2.0's
dynsec does not substitute ``%u`` or ``%c`` in ACLs (that arrives in 2.1; mosquitto
issue #2222), and Debian 12 ships 2.0.11.

``initial_config`` writes the plugin's starting file: the server's own login (all of
``tf/``, the shared subscriptions, and the control topic) and defaults that deny
everything else, so a device can subscribe to, publish on and receive nothing but its
own subtree, and ``$SYS`` is closed to it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import structlog

from fleet.domain.records import BrokerAccountChange
from fleet.transports.errors import TransportError
from fleet.transports.mqtt import MqttEndpoint, ServerMqtt

__all__ = [
    "CONTROL_TOPIC",
    "SERVER_ROLE",
    "DynsecAccounts",
    "command_batches",
    "device_role",
    "initial_config",
]

_log = structlog.get_logger(__name__)
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
SERVER_ROLE = "tinyfleet-server"
# What mosquitto_ctrl uses for new clients; the server's login is checked once per
# connection, so it can afford more.
SERVER_PASSWORD_ITERATIONS = 10_000
# The largest control message sent: a quarter of the 128 KiB ``max_packet_size`` the
# shipped broker configs set, since Mosquitto drops the connection of a client whose
# packet is over its limit, and an account sync would then never get through.
MAX_MESSAGE_BYTES = 32 * 1024
# And at most this many commands per message, so each is answered well within the
# timeout: the plugin slows as logins grow (113 ms per new login at 2,900, measured).
MAX_MESSAGE_COMMANDS = 20
# Errors that mean the change is already in place (a retried or replayed change).
_ALREADY = {
    ("createRole", "Role already exists"),
    ("createClient", "Client already exists"),
    ("disableClient", "Client not found"),
    ("deleteClient", "Client not found"),
    ("deleteRole", "Role not found"),
    ("getClient", "Client not found"),
}


def device_role(device_id: str) -> str:
    return f"tf-device-{device_id}"


def _allow(topic: str, *types: str) -> list[dict[str, Any]]:
    return [{"acltype": t, "topic": topic, "priority": 0, "allow": True} for t in types]


def _device_commands(change: BrokerAccountChange) -> list[dict[str, Any]]:
    device_id = change.device_id
    if change.action == "disable":
        return [{"command": "disableClient", "username": device_id}]
    if change.action == "delete":
        return [
            {"command": "deleteClient", "username": device_id},
            {"command": "deleteRole", "rolename": device_role(device_id)},
        ]
    if change.action != "create" or change.password is None:
        raise ValueError(f"cannot apply broker account change {change.action!r}")
    subtree = f"tf/d/{device_id}/#"
    return [
        {
            "command": "createRole",
            "rolename": device_role(device_id),
            "acls": _allow(
                subtree, "publishClientSend", "publishClientReceive", "subscribePattern"
            ),
        },
        {
            "command": "createClient",
            "username": device_id,
            "clientid": device_id,
            "password": change.password,
            "roles": [{"rolename": device_role(device_id)}],
        },
    ]


def _existing_login_commands(change: BrokerAccountChange) -> list[dict[str, Any]]:
    """A login that already exists (a new password, or a retried change) gets the
    change's password and is enabled."""
    assert change.password is not None
    return [
        {"command": "setClientPassword", "username": change.device_id, "password": change.password},
        {"command": "enableClient", "username": change.device_id},
    ]


class DynsecAccounts:
    """``fleet.services.broker_accounts.BrokerAccounts`` over the control topic."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        client_id: str,
        timeout: float = 10.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_message_commands: int = MAX_MESSAGE_COMMANDS,
    ) -> None:
        self._mqtt = ServerMqtt(endpoint, client_id=client_id, on_message=self._on_response)
        self._mqtt.subscribe(RESPONSE_TOPIC)
        self._timeout = timeout
        self._max_message_bytes = max_message_bytes
        self._max_message_commands = max_message_commands
        # request id → (answered, answers by correlation data, how many are expected)
        self._waiting: dict[str, tuple[threading.Event, dict[str, dict[str, Any]], int]] = {}
        self._lock = threading.Lock()

    def start(self, *, timeout: float = 10.0) -> None:
        self._mqtt.start(timeout=timeout)

    def stop(self) -> None:
        self._mqtt.stop()

    def apply(self, changes: Sequence[BrokerAccountChange]) -> None:
        """Apply the changes, touching only device logins: a login that exists without
        its device's role (the server's own, or an operator's) is left alone, so no
        device id can re-password, disable or delete it."""
        foreign = self._foreign_logins({change.device_id for change in changes})
        for device_id in sorted(foreign):
            _log.error("broker_login_not_a_device", username=device_id)
        changes = [change for change in changes if change.device_id not in foreign]
        sent = [(change, c) for change in changes for c in _device_commands(change)]
        answers = self._send([c for _, c in sent]) if sent else []
        existing = [
            change
            for (change, command), answer in zip(sent, answers, strict=True)
            if command["command"] == "createClient"
            and answer.get("error") == "Client already exists"
        ]
        if existing:
            self._send([c for change in existing for c in _existing_login_commands(change)])

    def _foreign_logins(self, usernames: set[str]) -> set[str]:
        """Of these usernames, those whose login exists but lacks its device role."""
        ordered = sorted(usernames)
        answers = self._send([{"command": "getClient", "username": u} for u in ordered])
        foreign: set[str] = set()
        for username, answer in zip(ordered, answers, strict=True):
            if answer.get("error") == "Client not found":
                continue
            roles = answer.get("data", {}).get("client", {}).get("roles", [])
            if device_role(username) not in {role.get("rolename") for role in roles}:
                foreign.add(username)
        return foreign

    def _send(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send the commands, in order, in messages within the size and count limits;
        their answers, in the same order."""
        answers: list[dict[str, Any]] = []
        batches = command_batches(
            commands, max_bytes=self._max_message_bytes, max_count=self._max_message_commands
        )
        for batch in batches:
            answers += self._send_one(batch)
        return answers

    def _send_one(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        request = str(uuid.uuid4())
        keyed = [c | {"correlationData": f"{request}:{i}"} for i, c in enumerate(commands)]
        done = threading.Event()
        answers: dict[str, dict[str, Any]] = {}
        with self._lock:
            self._waiting[request] = (done, answers, len(keyed))
        try:
            info = self._mqtt.publish(CONTROL_TOPIC, json.dumps({"commands": keyed}).encode())
            self._mqtt.wait_published([info], timeout=self._timeout)
            if not done.wait(self._timeout):
                raise TransportError(
                    f"no answer from the broker's dynsec plugin in {self._timeout}s"
                )
        finally:
            with self._lock:
                self._waiting.pop(request, None)
        ordered = [answers[c["correlationData"]] for c in keyed]
        failed = [
            answer
            for command, answer in zip(keyed, ordered, strict=True)
            if answer.get("error") and (command["command"], answer["error"]) not in _ALREADY
        ]
        if failed:
            raise TransportError(f"the broker refused account changes: {failed[:3]}")
        return ordered

    def _on_response(self, topic: str, payload: bytes) -> None:
        if topic != RESPONSE_TOPIC:
            return
        try:
            responses = json.loads(payload)["responses"]
        except (ValueError, KeyError, TypeError):
            _log.warning("dynsec_response_unreadable")
            return
        by_request: dict[str, list[dict[str, Any]]] = {}
        for response in responses:
            request = str(response.get("correlationData", "")).rsplit(":", 1)[0]
            by_request.setdefault(request, []).append(response)
        with self._lock:
            for request, answered in by_request.items():
                waiting = self._waiting.get(request)
                if waiting is None:
                    continue
                done, answers, expected = waiting
                answers.update((str(a["correlationData"]), a) for a in answered)
                if len(answers) >= expected:
                    done.set()


# Room for the correlation data ``_send_one`` adds to each command: a UUID, a colon and
# an index, quoted, with its key.
_CORRELATION_BYTES = len(', "correlationData": ""') + 36 + 1 + 10


def command_batches(
    commands: Sequence[dict[str, Any]], *, max_bytes: int, max_count: int
) -> list[list[dict[str, Any]]]:
    """The commands, in order, in runs of at most ``max_count`` whose control message
    stays within ``max_bytes``. A command too large to fit alone is an error, not a
    message the broker would drop."""
    envelope = len(json.dumps({"commands": []}))
    batches: list[list[dict[str, Any]]] = []
    size = envelope
    for command in commands:
        cost = len(json.dumps(command)) + _CORRELATION_BYTES + 2  # ", " between commands
        if envelope + cost > max_bytes:
            raise ValueError(f"a {command['command']} command is larger than {max_bytes} bytes")
        if not batches or size + cost > max_bytes or len(batches[-1]) >= max_count:
            batches.append([])
            size = envelope
        batches[-1].append(command)
        size += cost
    return batches


def initial_config(server_username: str, server_password: str) -> dict[str, Any]:
    """The dynsec plugin's starting configuration: the server's login and deny-all
    defaults. Device logins are added by the server itself."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac(
        "sha512", server_password.encode(), salt, SERVER_PASSWORD_ITERATIONS, 64
    )
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [
            {
                "username": server_username,
                "textname": "tinyfleet server replicas",
                "password": base64.b64encode(digest).decode(),
                "salt": base64.b64encode(salt).decode(),
                "iterations": SERVER_PASSWORD_ITERATIONS,
                "roles": [{"rolename": SERVER_ROLE}],
            }
        ],
        "groups": [],
        "roles": [
            {
                "rolename": SERVER_ROLE,
                "acls": [
                    *_allow(
                        "tf/#", "publishClientSend", "publishClientReceive", "subscribePattern"
                    ),
                    *_allow("$share/fleet/tf/#", "subscribePattern"),
                    *_allow(
                        "$CONTROL/dynamic-security/#",
                        "publishClientSend",
                        "publishClientReceive",
                        "subscribePattern",
                    ),
                ],
            }
        ],
    }
