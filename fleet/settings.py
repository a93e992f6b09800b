"""Server settings from the environment (``FLEET_*``) or a ``.env``-style file.

Everything has an embedded default so ``fleet serve`` runs with no configuration:
SQLite and blobs under the data directory, and a Mosquitto the server starts itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fleet.ratelimit import parse_rate

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEET_", env_file=None, extra="forbid")

    data_dir: Path = Field(default=Path("fleet-data"), description="state, blobs, keys")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite in the data dir"
    )
    mqtt_url: str | None = Field(
        default=None,
        description="mqtt://user@host:port, or mqtts:// for TLS; default: start a local broker",
    )
    mqtt_ca_file: Path | None = Field(
        default=None,
        description="CA bundle an mqtts:// broker's certificate must chain to; "
        "default: the system's trust store",
    )
    embedded_mqtt_port: int = Field(
        default=0, ge=0, le=65535, description="port of the self-started broker; 0 = free"
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    coap_host: str = Field(default="127.0.0.1", description="CoAP (UDP) bind address")
    coap_port: int = Field(
        default=5683, ge=0, le=65535, description="CoAP (UDP) port; 0 = a free port"
    )
    public_http_url: str | None = Field(
        default=None, description="base URL devices use for artifact downloads"
    )
    public_mqtt_url: str | None = Field(
        default=None,
        description="the broker's device listener (mqtt:// or mqtts://), written into "
        "provisioning bundles; unset with the embedded broker: its address",
    )
    root_path: Path | None = Field(default=None, description="pinned root metadata envelope")
    director_key_path: Path | None = Field(default=None, description="online director key")
    director_key_passphrase: str | None = None
    director_ttl_seconds: int = Field(default=7 * 86_400, ge=60)
    mqtt_share_group: str = "fleet"
    mqtt_client_id: str = Field(
        default="fleet-server",
        description="stable across restarts: the broker keeps this session's messages",
    )
    broker_accounts: Literal["none", "dynsec"] = Field(
        default="none",
        description="dynsec: the server creates and disables each device's broker login "
        "through Mosquitto's dynamic security plugin (docs/server.md 'Broker accounts')",
    )
    max_artifact_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    bootstrap_admin_token: str | None = Field(
        default=None, description="an admin token created on first start"
    )
    telemetry_min_reporters: int = Field(
        default=50, ge=1, description="k: a window's aggregate is released only with k reporters"
    )
    telemetry_central_epsilon: float = Field(
        default=1.0, gt=0.0, le=64.0, description="central DP epsilon per released histogram"
    )
    telemetry_grace_seconds: int = Field(
        default=5, ge=0, description="late reports accepted after a window's end"
    )
    telemetry_drift_gate: bool = Field(
        default=True,
        description="hold rollout waves whose new release drifts from its model card's "
        "reference while the old release's devices do not (rollouts may turn it off)",
    )
    telemetry_retention_days: int = Field(
        default=90, ge=1, description="released aggregates are deleted after this"
    )

    api_rate_per_token: str = Field(
        default="100/second",
        description="admin API requests per bearer token ('N/second', 'N/minute', …)",
    )
    api_rate_per_address: str = Field(
        default="200/second", description="admin API requests per client address"
    )
    device_message_rate: str = Field(
        default="120/minute",
        description="status/telemetry/online messages per device and transport; excess dropped",
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="where the limits' counters live: memory:// (this process) or "
        "redis://host:port so replicas share them",
    )

    @field_validator("api_rate_per_token", "api_rate_per_address", "device_message_rate")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("bootstrap_admin_token")
    @classmethod
    def _refuse_weak_token(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 24:
            raise ValueError("bootstrap admin token must be at least 24 characters")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'fleet.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
