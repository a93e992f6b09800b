"""What ``fleet serve`` writes is JSON lines, whoever logs: our code, uvicorn, Alembic.

A log shipper parses one format; a request's line carries the request id the caller
sent; readiness probes (every few seconds under Kubernetes) add nothing at INFO."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx

from fleet.local_setup import Trust
from fleet.transports.embedded_broker import Broker
from tests.e2e.server_process import ServerProcess
from tests.support.postgres import throwaway_database


def test_every_line_is_json_and_a_request_is_logged_with_its_id(
    trust: Trust, mosquitto: Broker, tmp_path: Path
) -> None:
    with throwaway_database("tinyfleet_logs") as database_url:
        server = ServerProcess(
            trust=trust,
            data_dir=tmp_path / "server",
            mqtt_url=f"mqtt://fleet-server@{mosquitto.host}:{mosquitto.port}",
            admin_token="tf_" + secrets.token_urlsafe(32),
            database_url=database_url,
            log_level="INFO",
        )
        server.start()
        try:
            for _ in range(3):
                assert httpx.get(f"{server.base_url}/readyz").status_code == 200
            answer = httpx.get(
                f"{server.base_url}/api/v1/devices",
                headers={
                    "Authorization": f"Bearer {server.admin_token}",
                    "X-Request-ID": "logs-check-1",
                },
            )
            assert answer.status_code == 200, answer.text
        finally:
            code, _ = server.terminate()
        assert code == 0
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    assert all({"event", "level", "timestamp"} <= set(r) for r in records), records
    (request,) = [r for r in records if r.get("request_id") == "logs-check-1"]
    assert (request["event"], request["status"], request["route"]) == (
        "http_request",
        200,
        "/api/v1/devices",
    )
    assert any(r.get("logger", "").startswith("uvicorn") for r in records), records
    # Readiness opens an Alembic context per probe; its chatter stays out.
    assert not [r for r in records if "Context impl" in r["event"]], records
    assert not [r for r in records if r["event"] == "http_request" and r["route"] == "/readyz"]
