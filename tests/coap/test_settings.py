"""``FLEET_COAP_HOST``/``FLEET_COAP_PORT``: a port that cannot be bound stops the start."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fleet.app import ConfigurationError, build_server
from fleet.local_setup import Trust
from fleet.settings import Settings


def test_a_coap_port_in_use_is_a_configuration_error(coap_trust: Trust, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        taken.bind(("::ffff:127.0.0.1", 0))
        port = taken.getsockname()[1]
        server = build_server(
            Settings(
                data_dir=tmp_path,
                root_path=coap_trust.root,
                director_key_path=coap_trust.director_key,
                coap_port=port,
            )
        )
        with pytest.raises(ConfigurationError, match="FLEET_COAP_PORT"):
            server.start()
        assert server.broker is not None and server.broker.process.poll() is not None
        server.engine.dispose()
